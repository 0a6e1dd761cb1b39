//! Embeds every `functions/<Name>/function.json` into the binary, so the handler knows the
//! bindings (timer schedules, routes) whatever its working directory, and a new folder is
//! picked up without editing code.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut names: Vec<String> = match std::fs::read_dir(&root) {
        Ok(dir) => dir
            .filter_map(Result::ok)
            .filter(|e| e.path().join("function.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) => {
            println!("cargo:warning=cannot read {}: {e}", root.display());
            std::process::exit(1);
        }
    };
    if names.is_empty() {
        println!("cargo:warning=no functions/<Name>/function.json under {}", root.display());
        std::process::exit(1);
    }
    names.sort();
    let mut out = String::from("/// (function name, function.json text), one per folder under functions/.\n");
    out.push_str("pub const FUNCTION_JSON: &[(&str, &str)] = &[\n");
    for name in &names {
        let path = root.join(name).join("function.json");
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(out, "    ({name:?}, include_str!({:?})),", path.display().to_string());
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("functions.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        println!("cargo:warning=could not write {}: {e}", dest.display());
        std::process::exit(1);
    }
}
