#!/usr/bin/env python3
"""Checks infra/ without the Bicep compiler (it cannot be installed here: it downloads itself).

Run through scripts/check-infra, which provides tree-sitter and the Bicep grammar in a venv.

1. Every infra/**/*.bicep parses with the tree-sitter Bicep grammar: no ERROR or MISSING node.
   Broken snippets must fail the same parse, or the check proves nothing.
2. The function app's siteConfig.appSettings (read from the syntax tree) against the settings the
   handler reads (SETTING_NAMES in handler/src/config.rs): every name is set or exempt below with
   its reason; no exemption is stale; no PORTAL_* name is one the handler does not read; nothing
   Flex Consumption refuses; every function.json `connection` is configured.
3. Every infra/*.parameters.json names only parameters main.bicep declares, and all it requires.
4. Self-tests: a copy of the template with one required setting cut out (in memory) must be
   reported, and so must a typo, a stale exemption and an unknown parameter.

A grammar is not the compiler: this does not resolve symbols, types or API versions.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tree_sitter
import tree_sitter_bicep

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
CONFIG_RS = ROOT / "handler" / "src" / "config.rs"
FUNCTIONS = ROOT / "functions"
MAIN = INFRA / "main.bicep"
MIN_SETTING_NAMES = 30

# Settings the handler reads that the template deliberately does not set, each with its reason.
EXEMPT: dict[str, str] = {
    "FUNCTIONS_CUSTOMHANDLER_PORT": "set by the Functions host for each worker process",
    "FUNCTIONS_HTTPWORKER_PORT": "legacy name of the same port, set by older hosts",
    "WEBSITE_AUTH_ENABLED": "set by App Service when Authentication is turned on; PORTAL_EASY_AUTH is set explicitly",
    "WEBSITE_SITE_NAME": "set by the platform (its presence refuses the dev identity and demo data)",
    "PORT": "standalone only: under the host the port comes from FUNCTIONS_CUSTOMHANDLER_PORT",
    "PORTAL_BIND_ADDRESS": "standalone only: under the host the handler binds 127.0.0.1",
    "PORTAL_FUNCTION_KEYS": "standalone only: the Functions host checks function keys",
    "PORTAL_CORS_ORIGINS": "standalone only: under the host the platform answers CORS (siteConfig.cors, from corsAllowedOrigins)",
    "PORTAL_CORS_CREDENTIALS": "standalone only: siteConfig.cors.supportCredentials (corsSupportCredentials) instead",
    "PORTAL_SQLITE_PATH": "local only: the deployment uses Azure SQL (PORTAL_DATABASE=mssql)",
    "MSSQL_ACCESS_TOKEN": "developer only (Authentication=Active Directory Default); the app uses its managed identity",
    "PORTAL_DEV_IDENTITY": "local only, and refused at start in Azure",
    "PORTAL_EMAIL_OUTBOX_DIR": "local only: the .eml outbox when no Communication Services is configured",
    "PORTAL_EMAIL_CONNECTION_STRING": "alternative to PORTAL_EMAIL_ENDPOINT with an access key; the app sends with its identity",
    "PORTAL_RECORDS_CONNECTION_STRING": "alternative to PORTAL_RECORDS_ACCOUNT_URL with an account key; shared keys are off",
    "PORTAL_RECORDS_DIR": "local only: the folder used when no Blob Storage is configured",
    "PORTAL_MAX_JSON_BYTES": "tuning: the handler's default (64KiB) fits the API",
    "PORTAL_MAX_INVOCATION_BYTES": "tuning: the default (48MiB) holds the largest direct upload base64-encoded",
    "PORTAL_WORKERS": "tuning: the default (cores, at most 8) fits a Flex instance",
    "PORTAL_RATE_LIMITS": "tuning: the built-in per-class limits apply",
    "PORTAL_RATE_LIMITS_ENABLED": "tuning: limits stay on (the default)",
    "PORTAL_RECORDS_MAX_BYTES": "tuning: the default (25MiB) upload limit through the API",
    "PORTAL_RECORDS_DIRECT_MAX_BYTES": "tuning: the default (32MiB) fits the blob trigger's invocation payload",
    "PORTAL_RECORDS_LINK_MINUTES": "tuning: links live the default 10 minutes",
}

# Settings the template sets that the handler does not read: the platform's, with their reason.
PLATFORM: dict[str, str] = {
    "AzureWebJobsStorage__blobServiceUri": "Functions host storage, identity-based",
    "AzureWebJobsStorage__queueServiceUri": "Functions host storage, identity-based",
    "AzureWebJobsStorage__credential": "Functions host storage, identity-based",
    "AzureWebJobsStorage__clientId": "Functions host storage: which user-assigned identity",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where the host sends telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry with the app's Entra identity",
}
# `<connection>__<property>` for a binding's identity-based connection (function.json `connection`).
CONNECTION_PROPERTIES = {"blobServiceUri", "queueServiceUri", "serviceUri", "accountName", "credential", "clientId"}

# Refused or meaningless on Flex Consumption (runtime and deployment live in functionAppConfig),
# or a key-based host storage connection.
FORBIDDEN: dict[str, str] = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption: functionAppConfig.runtime instead",
    "FUNCTIONS_WORKER_RUNTIME_VERSION": "Flex Consumption: functionAppConfig.runtime instead",
    "FUNCTIONS_EXTENSION_VERSION": "Flex Consumption: the runtime version is not an app setting",
    "WEBSITE_RUN_FROM_PACKAGE": "Flex Consumption: functionAppConfig.deployment instead",
    "WEBSITE_CONTENTSHARE": "not used by Flex Consumption",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": "not used by Flex Consumption (and a storage key)",
    "SCM_DO_BUILD_DURING_DEPLOYMENT": "not used by Flex Consumption",
    "ENABLE_ORYX_BUILD": "not used by Flex Consumption",
    "AzureWebJobsStorage": "a storage connection string with a key; identity-based AzureWebJobsStorage__* instead",
}

# Must not parse: proves the parse check can fail. Kept here, not as .bicep files under infra/.
BROKEN_SNIPPETS: dict[str, str] = {
    "unclosed object": "resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n",
    "parameter without a type": "param location = 'westeurope'\n",
    "missing value": "var tags = {\n  owner:\n}\n",
    "stray token": "output name string = st.name )\n",
}


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.failures.append(message)


def parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --- 1. syntax ------------------------------------------------------------------------------


def syntax_errors(source: bytes, tree: tree_sitter.Tree) -> list[tuple[int, int, str, str]]:
    """(line, column, kind, snippet) for every ERROR and MISSING node, 1-based."""
    lines = source.decode("utf-8", "replace").splitlines()
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, col = node.start_point
            line = lines[row] if row < len(lines) else ""
            kind = f"missing {node.type}" if node.is_missing else "syntax error"
            found.append((row + 1, col + 1, kind, line))
            if node.is_error:
                continue
        if node.has_error:
            stack.extend(reversed(node.children))
    return sorted(found)


def check_syntax(p: tree_sitter.Parser, files: list[Path], report: Report) -> dict[Path, tuple[bytes, tree_sitter.Tree]]:
    parsed = {}
    for path in files:
        source = path.read_bytes()
        tree = p.parse(source)
        errors = syntax_errors(source, tree)
        for line, col, kind, text in errors:
            report.fail(f"{rel(path)}:{line}:{col}: {kind}\n    {text}\n    {' ' * (col - 1)}^")
        if tree.root_node.has_error and not errors:
            report.fail(f"{rel(path)}: the parser reports an error it does not locate")
        parsed[path] = (source, tree)
    return parsed


def check_parser_can_fail(p: tree_sitter.Parser, report: Report) -> None:
    for name, snippet in BROKEN_SNIPPETS.items():
        tree = p.parse(snippet.encode())
        if not tree.root_node.has_error or not syntax_errors(snippet.encode(), tree):
            report.fail(f"self-test: the broken snippet '{name}' parsed without an error; the syntax check proves nothing")


# --- syntax tree helpers --------------------------------------------------------------------


def text(source: bytes, node: tree_sitter.Node) -> str:
    return source[node.start_byte : node.end_byte].decode()


def plain_string(source: bytes, node: tree_sitter.Node) -> str | None:
    """The value of a string literal without interpolation, else None."""
    if node.type != "string":
        return None
    if any(c.type != "string_content" for c in node.named_children):
        return None
    return "".join(text(source, c) for c in node.named_children)


def properties(source: bytes, obj: tree_sitter.Node) -> dict[str, tree_sitter.Node]:
    """An object literal's properties: key -> value node."""
    out = {}
    for prop in obj.named_children:
        if prop.type != "object_property" or len(prop.named_children) < 2:
            continue
        key_node, value = prop.named_children[0], prop.named_children[-1]
        key = plain_string(source, key_node) if key_node.type == "string" else text(source, key_node)
        if key is not None:
            out[key] = value
    return out


def resource_body(node: tree_sitter.Node) -> tree_sitter.Node | None:
    """The object of `resource x '...' = {...}` or `= if (...) {...}`."""
    for child in node.named_children:
        if child.type == "object":
            return child
        if child.type == "if_statement":
            return next((c for c in child.named_children if c.type == "object"), None)
    return None


def function_apps(source: bytes, tree: tree_sitter.Tree) -> list[tuple[tree_sitter.Node, tree_sitter.Node]]:
    """(declaration, body) of each Microsoft.Web/sites resource of kind functionapp declared here."""
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.named_children)
        if node.type != "resource_declaration":
            continue
        kind_node = next((c for c in node.named_children if c.type == "string"), None)
        type_name = plain_string(source, kind_node) if kind_node else None
        if not type_name or not type_name.lower().startswith("microsoft.web/sites@"):
            continue
        if any(c.type == "existing" or text(source, c) == "existing" for c in node.children):
            continue
        body = resource_body(node)
        if body is None:
            continue
        kind = properties(source, body).get("kind")
        if kind is not None and "functionapp" in text(source, kind):
            found.append((node, body))
    return found


@dataclass
class Setting:
    name: str
    node: tree_sitter.Node  # the array item, so a self-test can cut it out
    line: int


def app_settings(source: bytes, tree: tree_sitter.Tree, where: str) -> tuple[list[Setting], list[str]]:
    """The function app's siteConfig.appSettings names, and problems reading them."""
    apps = function_apps(source, tree)
    if len(apps) != 1:
        return [], [f"{where}: expected one function app (Microsoft.Web/sites, kind functionapp), found {len(apps)}"]
    _, body = apps[0]
    path = ["properties", "siteConfig", "appSettings"]
    node = body
    for key in path:
        if node.type != "object" or key not in properties(source, node):
            return [], [f"{where}: the function app has no {'.'.join(path)} object path (stopped at {key})"]
        node = properties(source, node)[key]
    if node.type != "array":
        return [], [f"{where}: siteConfig.appSettings must be an array literal of {{name, value}} objects to be checked"]
    settings, problems = [], []
    for item in node.named_children:
        if item.type == "comment":
            continue
        line = item.start_point[0] + 1
        if item.type != "object":
            problems.append(f"{where}:{line}: an appSettings item that is not an object literal cannot be checked")
            continue
        props = properties(source, item)
        name_node = props.get("name")
        name = plain_string(source, name_node) if name_node is not None else None
        if name is None:
            problems.append(f"{where}:{line}: an appSettings item needs a literal `name: '...'`")
            continue
        if "value" not in props:
            problems.append(f"{where}:{line}: {name} has no value")
        settings.append(Setting(name, item, line))
    return settings, problems


def declared_parameters(source: bytes, tree: tree_sitter.Tree) -> dict[str, bool]:
    """Parameter name -> whether it has a default."""
    out = {}
    for node in tree.root_node.named_children:
        if node.type != "parameter_declaration":
            continue
        name = next((c for c in node.named_children if c.type == "identifier"), None)
        if name is not None:
            out[text(source, name)] = any(c.type == "=" for c in node.children)
    return out


# --- 2. settings ----------------------------------------------------------------------------


def setting_names(config_rs: str) -> list[str]:
    """SETTING_NAMES from handler/src/config.rs; refuses anything but a plain list of literals."""
    match = re.search(r"pub const SETTING_NAMES: &\[&str\] = &\[(?P<body>[^\]]*)\];", config_rs)
    if not match:
        raise ValueError("handler/src/config.rs: `pub const SETTING_NAMES: &[&str] = &[ ... ];` not found (its shape changed?)")
    body = re.sub(r"//[^\n]*", "", match.group("body"))
    items = [i.strip() for i in body.split(",")]
    if items and items[-1] == "":
        items.pop()
    names = []
    for item in items:
        m = re.fullmatch(r'"([A-Za-z][A-Za-z0-9_]*)"', item)
        if not m:
            raise ValueError(f"handler/src/config.rs: SETTING_NAMES holds {item!r}, not a plain string literal")
        names.append(m.group(1))
    if len(names) < MIN_SETTING_NAMES:
        raise ValueError(f"handler/src/config.rs: SETTING_NAMES has {len(names)} names, expected at least {MIN_SETTING_NAMES}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"handler/src/config.rs: SETTING_NAMES lists {duplicates} twice")
    return names


def binding_connections() -> dict[str, list[dict]]:
    """function name -> its bindings that name a `connection`."""
    out = {}
    for path in sorted(FUNCTIONS.glob("*/function.json")):
        bindings = json.loads(path.read_text()).get("bindings", [])
        with_connection = [b for b in bindings if isinstance(b, dict) and b.get("connection")]
        if with_connection:
            out[path.parent.name] = with_connection
    return out


def compare_settings(
    settings: list[Setting],
    handler_names: list[str],
    exempt: dict[str, str],
    connections: dict[str, list[dict]],
    where: str,
) -> list[str]:
    problems = []
    names = [s.name for s in settings]
    handler = set(handler_names)
    present = set(names)
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{where}: {name} is set twice")
    for name in handler_names:
        if name not in present and name not in exempt:
            problems.append(f"{where}: the handler reads {name}, which the template neither sets nor exempts (scripts/check_infra.py EXEMPT)")
    for name in sorted(exempt):
        if name not in handler:
            problems.append(f"scripts/check_infra.py: stale exemption {name}: the handler no longer reads it (SETTING_NAMES)")
        elif name in present:
            problems.append(f"{where}: {name} is set although it is exempt ({exempt[name]}); drop one")
    prefixes = {b["connection"] for bindings in connections.values() for b in bindings}
    for s in settings:
        if s.name in FORBIDDEN:
            problems.append(f"{where}:{s.line}: {s.name} must not be set: {FORBIDDEN[s.name]}")
        elif s.name.startswith("PORTAL_") and s.name not in handler:
            problems.append(f"{where}:{s.line}: {s.name} is not a setting the handler reads (a typo?)")
        elif s.name in handler or s.name in PLATFORM:
            continue
        elif "__" in s.name and s.name.split("__", 1)[0] in prefixes:
            prop = s.name.split("__", 1)[1]
            if prop not in CONNECTION_PROPERTIES:
                problems.append(f"{where}:{s.line}: {s.name}: `{prop}` is not an identity-based connection property")
        else:
            problems.append(f"{where}:{s.line}: {s.name} is neither read by the handler nor a known platform setting")
    for function, bindings in connections.items():
        for b in bindings:
            conn = b["connection"]
            if conn in present:
                problems.append(f"{where}: {conn} is a connection string; use identity-based {conn}__* settings")
            elif f"{conn}__blobServiceUri" not in present and f"{conn}__serviceUri" not in present:
                problems.append(f"{where}: functions/{function} binds `{conn}`, but no {conn}__blobServiceUri is set")
            elif f"{conn}__credential" not in present:
                problems.append(f"{where}: {conn}__credential (managedidentity) is not set")
    return problems


def check_blob_trigger_source(source: bytes, report: Report) -> None:
    """Flex Consumption runs only Event Grid blob triggers."""
    if b"'FC1'" not in source:
        return
    for path in sorted(FUNCTIONS.glob("*/function.json")):
        for b in json.loads(path.read_text()).get("bindings", []):
            if b.get("type") == "blobTrigger" and b.get("source") != "EventGrid":
                report.fail(f"{rel(path)}: a blobTrigger on Flex Consumption needs \"source\": \"EventGrid\"")


# --- 3. parameter files ---------------------------------------------------------------------


def compare_parameters(declared: dict[str, bool], given: dict, where: str) -> list[str]:
    problems = []
    for name in sorted(given):
        if name not in declared:
            problems.append(f"{where}: parameter {name} is not declared in infra/main.bicep")
    for name, has_default in sorted(declared.items()):
        if not has_default and name not in given:
            problems.append(f"{where}: required parameter {name} (no default in main.bicep) is missing")
    return problems


def check_parameter_files(declared: dict[str, bool], report: Report) -> int:
    files = sorted(INFRA.glob("*.parameters.json"))
    for path in files:
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            report.fail(f"{rel(path)}: not JSON: {e}")
            continue
        given = doc.get("parameters")
        if not isinstance(given, dict):
            report.fail(f"{rel(path)}: no `parameters` object")
            continue
        for problem in compare_parameters(declared, given, rel(path)):
            report.fail(problem)
    return len(files)


# --- 4. self-tests --------------------------------------------------------------------------


def self_tests(p, source, settings, handler_names, connections, declared, report: Report) -> int:
    """The comparisons must notice what they exist to notice. Everything here is in memory."""
    ran = 0

    def expect(label: str, problems: list[str], needle: str) -> None:
        nonlocal ran
        ran += 1
        if not any(needle in m for m in problems):
            report.fail(f"self-test '{label}': expected a finding containing {needle!r}, got {problems or 'none'}")

    baseline = compare_settings(settings, handler_names, EXEMPT, connections, "main.bicep")
    if baseline:
        return ran  # the real findings are reported already; the mutations would say nothing new
    # Cut one required setting out of the template's text, parse the copy, read it again.
    victim = next(s for s in settings if s.name in handler_names)
    start, end = victim.node.start_byte, victim.node.end_byte
    mutated = source[:start] + source[end:]
    tree = p.parse(mutated)
    cut, problems = app_settings(mutated, tree, "copy")
    if tree.root_node.has_error or problems or len(cut) != len(settings) - 1:
        report.fail(f"self-test: the copy without {victim.name} did not parse to one setting fewer ({problems})")
    expect(f"template without {victim.name}", compare_settings(cut, handler_names, EXEMPT, connections, "copy"), victim.name)

    typo = settings + [Setting("PORTAL_DATABSE", victim.node, 0)]
    expect("typo PORTAL_DATABSE", compare_settings(typo, handler_names, EXEMPT, connections, "copy"), "PORTAL_DATABSE")
    stale = dict(EXEMPT, PORTAL_RETIRED_SETTING="gone")
    expect("stale exemption", compare_settings(settings, handler_names, stale, connections, "copy"), "PORTAL_RETIRED_SETTING")
    forbidden = settings + [Setting("FUNCTIONS_WORKER_RUNTIME", victim.node, 0)]
    expect("Flex-refused setting", compare_settings(forbidden, handler_names, EXEMPT, connections, "copy"), "FUNCTIONS_WORKER_RUNTIME")
    if connections:
        conn = next(iter(next(iter(connections.values()))))["connection"]
        no_conn = [s for s in settings if not s.name.startswith(f"{conn}__")]
        expect("binding connection unset", compare_settings(no_conn, handler_names, EXEMPT, connections, "copy"), conn)
    expect("unknown parameter", compare_parameters(declared, {"environmentNmae": {}}, "copy"), "environmentNmae")
    required = next((n for n, has_default in declared.items() if not has_default), None)
    if required:
        expect("required parameter missing", compare_parameters(declared, {}, "copy"), required)
    try:
        setting_names('pub const SETTING_NAMES: &[&str] = &["PORT", some_const];')
        report.fail("self-test: a SETTING_NAMES array that is not all literals was accepted")
    except ValueError:
        ran += 1
    return ran


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    started = time.monotonic()
    report = Report()
    p = parser()

    files = sorted(INFRA.rglob("*.bicep"))
    if MAIN not in files:
        print(f"check-infra: {rel(MAIN)} is missing", file=sys.stderr)
        return 1
    check_parser_can_fail(p, report)
    parsed = check_syntax(p, files, report)

    try:
        handler_names = setting_names(CONFIG_RS.read_text())
    except ValueError as e:
        report.fail(str(e))
        handler_names = []

    source, tree = parsed[MAIN]
    settings, problems = [], []
    for path, (src, tr) in parsed.items():
        if function_apps(src, tr):
            settings, problems = app_settings(src, tr, rel(path))
            source, tree = src, tr
            break
    else:
        problems = ["infra/: no function app resource (Microsoft.Web/sites, kind functionapp) found"]
    for problem in problems:
        report.fail(problem)

    connections = binding_connections()
    ran = 0
    if handler_names and settings:
        for problem in compare_settings(settings, handler_names, EXEMPT, connections, rel(MAIN)):
            report.fail(problem)
        check_blob_trigger_source(source, report)
    declared = declared_parameters(*parsed[MAIN])
    parameter_files = check_parameter_files(declared, report)
    if handler_names and settings and not tree.root_node.has_error:
        ran = self_tests(p, source, settings, handler_names, connections, declared, report)

    elapsed = time.monotonic() - started
    if report.failures:
        print("check-infra: FAILED", file=sys.stderr)
        for failure in report.failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print(f"check-infra: {len(files)} Bicep files parse ({len(BROKEN_SNIPPETS)} broken snippets are refused)")
    print(
        f"check-infra: {len(settings)} app settings; {len(handler_names)} handler settings, "
        f"{len(handler_names) - len(EXEMPT)} set and {len(EXEMPT)} exempt with a reason"
    )
    print(f"check-infra: {parameter_files} parameter file(s) match main.bicep's {len(declared)} parameters")
    print(f"check-infra: {ran} self-tests noticed what they should; ok in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
