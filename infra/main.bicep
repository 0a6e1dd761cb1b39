// The patient portal in one resource group: the Rust custom handler on Azure Functions Flex
// Consumption, Azure SQL (Entra-only), Blob Storage for medical records, Communication Services
// Email, Application Insights, and the Event Grid wiring for the RecordUploaded blob trigger.
//
// One user-assigned managed identity does everything the app reaches: host storage
// (AzureWebJobsStorage), the deployment container, the records account (and its blob trigger),
// Azure SQL, Communication Services and Application Insights. No keys, passwords or connection
// strings with secrets exist anywhere in this template or its outputs.
//
// Two deployments (see infra/README.md): first this template as is; then publish the code
// (scripts/publish <app>); then this template again with deployEventSubscription=true, which
// subscribes the blob trigger's webhook (its blobs_extension key exists only once code runs).
//
// Checked without the Bicep compiler by scripts/check-infra (tree-sitter parse, app settings
// against handler/src/config.rs SETTING_NAMES).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@minLength(2)
@maxLength(12)
@description('Short environment name (prod, staging, test): part of every resource name.')
param environmentName string

@description('Azure region for everything except the global Communication Services resources. Must offer Flex Consumption.')
param location string = resourceGroup().location

@minLength(2)
@maxLength(8)
@description('Lower-case prefix for resource names.')
param namePrefix string = 'portal'

@description('Tags applied to every resource.')
param tags object = {}

// --- Function app ---

@description('Function app name. Empty: func-<prefix>-<env>-<token>.')
param functionAppName string = ''

@allowed([512, 2048, 4096])
@description('Memory per Flex Consumption instance (MB). The blob trigger carries a whole upload base64-encoded in one invocation; 2048 leaves room for a 32 MiB direct upload.')
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
@description('Most instances the app scales out to. Each instance pools up to 10 SQL connections: keep instances x 10 under the database tier\'s worker limit.')
param maximumInstanceCount int = 40

@minValue(0)
@maxValue(10)
@description('Always-ready instances for the HTTP functions (billed while idle; removes cold starts). 0 = scale to zero.')
param alwaysReadyHttpInstances int = 0

@description('Browser origins allowed to call the API and to PUT direct uploads into the records container (e.g. https://portal.example.org). Platform CORS: under the host the platform answers preflight, not the handler.')
param corsAllowedOrigins array = []

@description('Allow credentials (cookies, Authorization) on cross-origin API calls. Never together with a * origin.')
param corsSupportCredentials bool = false

// --- Who may sign in ---

@description('Directory (tenant) id whose Entra ID bearer tokens the handler validates itself (PORTAL_ENTRA_TENANT_ID). Empty: no bearer validation (only Easy Auth, if enabled).')
param entraTenantId string = tenant().tenantId

@description('Accepted token audiences, comma-separated: the API app registration\'s application id URI and/or client id (PORTAL_ENTRA_AUDIENCES). Required when entraTenantId is set.')
param entraAudiences string

@description('Trust App Service Authentication\'s X-MS-CLIENT-PRINCIPAL header (PORTAL_EASY_AUTH). Turn on only after configuring Authentication on the app; otherwise anyone could forge the header.')
param trustEasyAuth bool = false

@description('Entra object ids made portal admins on their first sign-in, comma-separated (PORTAL_BOOTSTRAP_ADMINS). A new clinic needs its first admin.')
param bootstrapAdminObjectIds string = ''

// --- The clinic ---

@description('Who messages are from (PORTAL_CLINIC_NAME).')
param clinicName string = 'Patient Portal'

@description('Where patients manage their appointments, linked in every message (PORTAL_PUBLIC_URL), e.g. https://portal.example.org.')
param publicUrl string

@description('Clinic policy: how long a hold keeps a slot (1-60 min), how long a waitlist offer is held (1-1440 min), and reminder offsets before an appointment (up to four of <n>m, <n>h, <n>d; empty for none).')
param clinicPolicy clinicPolicyType = {
  holdMinutes: 5
  waitlistOfferMinutes: 60
  reminderOffsets: '24h,2h'
}

@allowed(['error', 'warn', 'info', 'debug'])
@description('Handler log filter (PORTAL_LOG).')
param logLevel string = 'info'

// --- Azure SQL ---

@description('Display name (login) of the Entra user or group that administers the SQL server, e.g. sql-admins.')
param sqlEntraAdminLogin string

@description('Object id of that Entra user or group.')
param sqlEntraAdminObjectId string

@allowed(['User', 'Group', 'Application'])
@description('What the SQL Entra admin is. A group lets several operators run migrations and grants.')
param sqlEntraAdminPrincipalType string = 'Group'

@description('Database name.')
param sqlDatabaseName string = 'portal'

@description('Database SKU. Default: General Purpose serverless, 2 vCores.')
param sqlDatabaseSku object = {
  name: 'GP_S_Gen5'
  tier: 'GeneralPurpose'
  family: 'Gen5'
  capacity: 2
}

@description('Serverless only: minutes idle before the database pauses (-1 never; a paused database answers the first request after minutes with 503s). Ignored by provisioned SKUs.')
param sqlAutoPauseDelayMinutes int = -1

@allowed(['Local', 'Zone', 'Geo', 'GeoZone'])
@description('Redundancy of the database backups.')
param sqlBackupStorageRedundancy string = 'Geo'

@description('Allow connections from Azure services (the 0.0.0.0 rule). Flex Consumption without VNet integration has no fixed outbound address, so the app needs it; with VNet integration and a private endpoint, set false.')
param sqlAllowAzureServices bool = true

@description('An operator\'s public IP to let through the SQL firewall for migrations and the grants (empty: none). Remove it afterwards.')
param sqlOperatorIpAddress string = ''

// --- Storage ---

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS', 'Standard_RAGRS', 'Standard_RAGZRS'])
@description('Redundancy of the records account (patients\' files). Standard_LRS or Standard_GRS in a region without availability zones.')
param recordsStorageSku string = 'Standard_ZRS'

@description('Records container (PORTAL_RECORDS_CONTAINER). Must equal the first segment of the RecordUploaded trigger path in functions/RecordUploaded/function.json.')
param recordsContainerName string = 'medical-records'

@minValue(1)
@maxValue(365)
@description('Days deleted record blobs and containers stay recoverable.')
param recordsSoftDeleteDays int = 30

// --- Communication Services ---

@allowed(['United States', 'Europe', 'UK', 'Australia', 'Japan', 'France', 'Switzerland', 'Germany', 'Norway', 'Canada', 'India', 'Asia Pacific', 'Africa', 'Brazil', 'Korea', 'UAE'])
@description('Where Communication Services keeps its data at rest.')
param communicationDataLocation string = 'Europe'

// --- Monitoring ---

@minValue(30)
@maxValue(730)
@description('Log Analytics retention (days).')
param logRetentionDays int = 90

@description('Application Insights accepts only Entra-authenticated telemetry (the app sends with its identity, APPLICATIONINSIGHTS_AUTHENTICATION_STRING).')
param appInsightsEntraAuthOnly bool = true

@description('Send platform logs (function app, records blob reads/writes/deletes, SQL security audit) to the Log Analytics workspace.')
param diagnosticsEnabled bool = true

// --- Second step ---

@description('Step 2, after the code is published: subscribe the RecordUploaded blob trigger to BlobCreated events of the records container. Needs the blobs_extension system key, which exists only once the code runs.')
param deployEventSubscription bool = false

// ---------------------------------------------------------------------------------------------
// Types and names
// ---------------------------------------------------------------------------------------------

@description('Clinic scheduling policy.')
type clinicPolicyType = {
  @minValue(1)
  @maxValue(60)
  holdMinutes: int

  @minValue(1)
  @maxValue(1440)
  waitlistOfferMinutes: int

  reminderOffsets: string
}

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
// Lower case throughout: SQL server, storage account and container names refuse upper case.
var baseName = toLower('${namePrefix}-${environmentName}')
var compactPrefix = toLower(replace(namePrefix, '-', ''))
var appName = empty(functionAppName) ? 'func-${baseName}-${take(token, 6)}' : functionAppName
var names = {
  identity: 'id-${baseName}'
  plan: 'asp-${baseName}'
  logAnalytics: 'log-${baseName}'
  appInsights: 'appi-${baseName}'
  hostStorage: take('st${compactPrefix}${token}', 24)
  recordsStorage: take('strec${compactPrefix}${token}', 24)
  recordsTopic: 'evgt-${baseName}-records'
  sqlServer: 'sql-${baseName}-${take(token, 6)}'
  emailService: 'ecs-${baseName}-${take(token, 6)}'
  communication: 'acs-${baseName}-${take(token, 6)}'
}
var isServerless = contains(sqlDatabaseSku.name, '_S_')
var allTags = union(tags, { application: 'patient-portal', environment: environmentName })
// One container per app for the deployment package (Flex Consumption's deployment storage). The
// token suffix, as in Microsoft's Flex samples, keeps the name from ending in a hyphen.
var deploymentContainerName = 'app-package-${toLower(take(appName, 32))}-${take(token, 7)}'
// The function whose webhook receives the records' BlobCreated events.
var blobTriggerFunctionName = 'RecordUploaded'

// Built-in role definitions (ids are the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  communicationAndEmailServiceOwner: '09976791-48a7-449e-bb21-39d1a415f350'
}

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
  tags: allTags
}

// ---------------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: names.logAnalytics
  location: location
  tags: allTags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: names.appInsights
  location: location
  tags: allTags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: appInsightsEntraAuthOnly
    IngestionMode: 'LogAnalytics'
  }
}

// ---------------------------------------------------------------------------------------------
// Host storage: AzureWebJobsStorage (timer locks, blob receipts) and the deployment package
// ---------------------------------------------------------------------------------------------

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: names.hostStorage
  location: location
  tags: allTags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }

  resource blobs 'blobServices' = {
    name: 'default'

    resource deployment 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Records storage: the private container of patients' files, read and written by the handler
// with user-delegation SAS links, and watched by the RecordUploaded blob trigger
// ---------------------------------------------------------------------------------------------

resource recordsStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: names.recordsStorage
  location: location
  tags: allTags
  kind: 'StorageV2'
  sku: {
    name: recordsStorageSku
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    // User-delegation SAS and identity-based access only: no account key can read a record.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // Browsers PUT direct uploads and GET downloads by SAS, so the blob endpoint stays public.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }

  resource blobs 'blobServices' = {
    name: 'default'
    properties: {
      deleteRetentionPolicy: {
        enabled: true
        days: recordsSoftDeleteDays
      }
      containerDeleteRetentionPolicy: {
        enabled: true
        days: recordsSoftDeleteDays
      }
      // Direct uploads (PUT by create-only SAS) and downloads from the portal's pages.
      cors: {
        corsRules: empty(corsAllowedOrigins) ? [] : [
          {
            allowedOrigins: corsAllowedOrigins
            allowedMethods: ['GET', 'HEAD', 'PUT', 'OPTIONS']
            allowedHeaders: ['content-type', 'x-ms-*']
            exposedHeaders: ['content-length', 'content-type', 'content-disposition', 'etag', 'x-ms-*']
            maxAgeInSeconds: 3600
          }
        ]
      }
    }

    resource records 'containers' = {
      name: recordsContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }
}

// BlobCreated events of the records account; the subscription to the function's webhook is the
// second step (modules/records-event-subscription.bicep).
resource recordsTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: names.recordsTopic
  location: location
  tags: allTags
  properties: {
    source: recordsStorage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// ---------------------------------------------------------------------------------------------
// Azure SQL: Entra-only authentication, TLS 1.2
// ---------------------------------------------------------------------------------------------

resource sqlServer 'Microsoft.Sql/servers@2023-08-01' = {
  name: names.sqlServer
  location: location
  tags: allTags
  properties: {
    version: '12.0'
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: sqlEntraAdminLogin
      sid: sqlEntraAdminObjectId
      principalType: sqlEntraAdminPrincipalType
      tenantId: tenant().tenantId
    }
  }

  resource database 'databases' = {
    name: sqlDatabaseName
    location: location
    tags: allTags
    sku: sqlDatabaseSku
    properties: {
      // Serverless-only properties; provisioned SKUs refuse them.
      autoPauseDelay: isServerless ? sqlAutoPauseDelayMinutes : null
      minCapacity: isServerless ? json('0.5') : null
      requestedBackupStorageRedundancy: sqlBackupStorageRedundancy
      zoneRedundant: false
    }
  }

  // 0.0.0.0-0.0.0.0 is the platform's "Azure services" rule: any Azure-hosted client may try to
  // connect (it still needs an Entra identity the database knows). Private endpoints instead:
  // see infra/README.md.
  resource allowAzureServices 'firewallRules' = if (sqlAllowAzureServices) {
    name: 'AllowAllWindowsAzureIps'
    properties: {
      startIpAddress: '0.0.0.0'
      endIpAddress: '0.0.0.0'
    }
  }

  resource operatorIp 'firewallRules' = if (!empty(sqlOperatorIpAddress)) {
    name: 'operator'
    properties: {
      startIpAddress: sqlOperatorIpAddress
      endIpAddress: sqlOperatorIpAddress
    }
  }

  resource auditing 'auditingSettings' = if (diagnosticsEnabled) {
    name: 'default'
    properties: {
      state: 'Enabled'
      isAzureMonitorTargetEnabled: true
    }
    // Audit events reach Log Analytics through the master database's diagnostic setting.
    dependsOn: [
      sqlAuditDiagnostics
    ]
  }
}

// SQL auditing to Azure Monitor goes through the master database's diagnostic setting.
resource sqlMaster 'Microsoft.Sql/servers/databases@2023-08-01' existing = {
  parent: sqlServer
  name: 'master'
}

// ---------------------------------------------------------------------------------------------
// Communication Services Email, with the Azure-managed domain (<guid>.azurecomm.net)
// ---------------------------------------------------------------------------------------------

resource emailService 'Microsoft.Communication/emailServices@2023-04-01' = {
  name: names.emailService
  location: 'global'
  tags: allTags
  properties: {
    dataLocation: communicationDataLocation
  }

  resource managedDomain 'domains' = {
    name: 'AzureManagedDomain'
    location: 'global'
    tags: allTags
    properties: {
      domainManagement: 'AzureManaged'
      // Nothing in a patient's message is tracked (the handler also turns it off per message).
      userEngagementTracking: 'Disabled'
    }
  }
}

resource communication 'Microsoft.Communication/communicationServices@2023-04-01' = {
  name: names.communication
  location: 'global'
  tags: allTags
  properties: {
    dataLocation: communicationDataLocation
    linkedDomains: [
      emailService::managedDomain.id
    ]
  }
}

// The Azure-managed domain comes with the DoNotReply sender. fromSenderDomain is the domain of the
// From header the recipient sees (RFC 5322); mailFromSenderDomain is the envelope's (RFC 5321).
var emailSender = 'DoNotReply@${emailService::managedDomain.properties.fromSenderDomain}'

// ---------------------------------------------------------------------------------------------
// The function app (Flex Consumption, Linux, custom handler)
// ---------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: names.plan
  location: location
  tags: allTags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

var identityClientId = identity.properties.clientId
var sqlConnectionString = 'Server=tcp:${sqlServer.properties.fullyQualifiedDomainName},1433;Database=${sqlDatabaseName};Authentication=Active Directory Managed Identity;Encrypt=True;User Id=${identityClientId}'

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: allTags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      // The custom-handler stack: host.json's customHandler section starts ./handler. `custom` /
      // `1.0` is what the Flex stack definition offers for FC1 (Az.Functions FunctionsStackFlexData
      // custom.json, functionAppConfigProperties.runtime); Flex takes no FUNCTIONS_WORKER_RUNTIME.
      runtime: {
        name: 'custom'
        version: '1.0'
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: alwaysReadyHttpInstances > 0 ? [
          {
            name: 'http'
            instanceCount: alwaysReadyHttpInstances
          }
        ] : []
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      // No http20Enabled: the portal hides the HTTP 2.0 setting for Flex apps and some siteConfig
      // properties are refused on FC1; the default is fine for the API.
      cors: {
        allowedOrigins: corsAllowedOrigins
        supportCredentials: corsSupportCredentials
      }
      // Every setting the handler needs in Azure. scripts/check-infra compares these names with
      // SETTING_NAMES in handler/src/config.rs; what is deliberately left out, and why, is the
      // exemption table in scripts/check_infra.py.
      appSettings: [
        // Functions host storage, identity-based (Blob Data Owner + Queue Data Contributor).
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: hostStorage.properties.primaryEndpoints.blob
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: hostStorage.properties.primaryEndpoints.queue
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // Telemetry, sent with the app's identity when local auth is off.
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        // The RecordUploaded blob trigger's connection (functions/RecordUploaded/function.json).
        {
          name: 'RecordsStorage__blobServiceUri'
          value: recordsStorage.properties.primaryEndpoints.blob
        }
        {
          name: 'RecordsStorage__queueServiceUri'
          value: recordsStorage.properties.primaryEndpoints.queue
        }
        {
          name: 'RecordsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'RecordsStorage__clientId'
          value: identityClientId
        }
        // The handler (README "Configuration").
        {
          name: 'PORTAL_DATABASE'
          value: 'mssql'
        }
        {
          name: 'MSSQL_CONNECTION_STRING'
          value: sqlConnectionString
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'PORTAL_RECORDS_ACCOUNT_URL'
          value: recordsStorage.properties.primaryEndpoints.blob
        }
        {
          name: 'PORTAL_RECORDS_CONTAINER'
          value: recordsContainerName
        }
        {
          name: 'PORTAL_EMAIL_ENDPOINT'
          value: 'https://${communication.properties.hostName}'
        }
        {
          name: 'PORTAL_EMAIL_SENDER'
          value: emailSender
        }
        {
          name: 'PORTAL_CLINIC_NAME'
          value: clinicName
        }
        {
          name: 'PORTAL_PUBLIC_URL'
          value: publicUrl
        }
        {
          name: 'PORTAL_ENTRA_TENANT_ID'
          value: entraTenantId
        }
        {
          name: 'PORTAL_ENTRA_AUDIENCES'
          value: entraAudiences
        }
        {
          // This cloud's authority (sovereign clouds differ); only with a tenant, which it needs.
          name: 'PORTAL_ENTRA_AUTHORITY'
          value: empty(entraTenantId) ? '' : environment().authentication.loginEndpoint
        }
        {
          name: 'PORTAL_EASY_AUTH'
          value: trustEasyAuth ? 'true' : 'false'
        }
        {
          name: 'PORTAL_BOOTSTRAP_ADMINS'
          value: bootstrapAdminObjectIds
        }
        {
          name: 'PORTAL_HOLD_MINUTES'
          value: string(clinicPolicy.holdMinutes)
        }
        {
          name: 'PORTAL_WAITLIST_OFFER_MINUTES'
          value: string(clinicPolicy.waitlistOfferMinutes)
        }
        {
          name: 'PORTAL_REMINDER_OFFSETS'
          value: clinicPolicy.reminderOffsets
        }
        {
          // The host runs the timers (ReminderSweep); true would be refused at start.
          name: 'PORTAL_RUN_TIMERS'
          value: 'false'
        }
        {
          name: 'PORTAL_LOG_FORMAT'
          value: 'json'
        }
        {
          name: 'PORTAL_LOG'
          value: logLevel
        }
      ]
    }
  }
  dependsOn: [
    // The host reads its storage and deployment package with the identity from the first start.
    hostBlobOwner
    hostQueueContributor
  ]
}

// No FTP, no basic-auth publishing: `func azure functionapp publish` uses the signed-in Entra
// account.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// ---------------------------------------------------------------------------------------------
// Role assignments for the app's identity
// ---------------------------------------------------------------------------------------------

// AzureWebJobsStorage with an identity needs Blob Data Owner (timer leases, blob receipts, the
// deployment package) and Queue Data Contributor (the blob trigger's internal queues).
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, identity.id, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, identity.id, roles.storageQueueDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Records: the handler reads, writes and deletes blobs, creates its container if missing and
// asks for user-delegation keys (Data Owner includes the Delegator action); the blob trigger's
// identity connection needs Blob Data Owner and Queue Data Contributor.
resource recordsBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(recordsStorage.id, identity.id, roles.storageBlobDataOwner)
  scope: recordsStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource recordsQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(recordsStorage.id, identity.id, roles.storageQueueDataContributor)
  scope: recordsStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Sending email with an Entra token.
resource emailSenderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communication.id, identity.id, roles.communicationAndEmailServiceOwner)
  scope: communication
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.communicationAndEmailServiceOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Telemetry with an Entra token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Azure SQL is not Azure RBAC: the database user and its grants are T-SQL (output below).

// ---------------------------------------------------------------------------------------------
// Diagnostic settings (optional)
// ---------------------------------------------------------------------------------------------

resource functionAppDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (diagnosticsEnabled) {
  name: 'to-log-analytics'
  scope: functionApp
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

// Who read, wrote or deleted which record blob: part of the PHI access trail.
resource recordsBlobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (diagnosticsEnabled) {
  name: 'to-log-analytics'
  scope: recordsStorage::blobs
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource sqlAuditDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (diagnosticsEnabled) {
  name: 'to-log-analytics'
  scope: sqlMaster
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        category: 'SQLSecurityAuditEvents'
        enabled: true
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------
// Step 2: the blob trigger's Event Grid subscription (after the code is published)
// ---------------------------------------------------------------------------------------------

module recordsEventSubscription 'modules/records-event-subscription.bicep' = if (deployEventSubscription) {
  name: 'records-event-subscription'
  params: {
    functionAppName: functionApp.name
    systemTopicName: recordsTopic.name
    containerName: recordsContainerName
    functionName: blobTriggerFunctionName
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (no secrets)
// ---------------------------------------------------------------------------------------------

// The database user's name is the identity's name; the SID form below works where the server
// cannot look the name up in Entra ID (a pipeline signed in as a service principal).
var dbUser = '[${identity.name}]'
var clientIdHex = replace(identityClientId, '-', '')
// A GUID's first three groups are stored little-endian in its binary form.
var identitySid = '0x${substring(clientIdHex, 6, 2)}${substring(clientIdHex, 4, 2)}${substring(clientIdHex, 2, 2)}${substring(clientIdHex, 0, 2)}${substring(clientIdHex, 10, 2)}${substring(clientIdHex, 8, 2)}${substring(clientIdHex, 14, 2)}${substring(clientIdHex, 12, 2)}${substring(clientIdHex, 16, 16)}'

@description('The function app to publish to: scripts/publish <this>.')
output functionAppName string = functionApp.name

@description('The app\'s default host name (new apps may get <name>-<hash>.<region>-01.azurewebsites.net).')
output functionAppHostName string = functionApp.properties.defaultHostName

output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'

output managedIdentityName string = identity.name

output managedIdentityClientId string = identityClientId

output managedIdentityPrincipalId string = identity.properties.principalId

output sqlServerFqdn string = sqlServer.properties.fullyQualifiedDomainName

output sqlDatabaseName string = sqlDatabaseName

@description('Run once in the portal database as the SQL Entra admin, after `handler migrate` has created the schema (see infra/README.md). Least privilege: read and write the tables, append-only audit trail, no DDL.')
output sqlGrantStatements array = [
  'CREATE USER ${dbUser} FROM EXTERNAL PROVIDER;'
  'ALTER ROLE db_datareader ADD MEMBER ${dbUser};'
  'ALTER ROLE db_datawriter ADD MEMBER ${dbUser};'
  'GRANT SELECT, INSERT ON dbo.audit_events TO ${dbUser};'
  'DENY UPDATE, DELETE ON dbo.audit_events TO ${dbUser};'
]

@description('Only if the app applies its own migrations at start instead of the pipeline (it could then lift its own DENY): run after sqlGrantStatements.')
output sqlMigrationGrantStatements array = [
  'ALTER ROLE db_ddladmin ADD MEMBER ${dbUser};'
  'GRANT REFERENCES ON SCHEMA::dbo TO ${dbUser};'
]

@description('Replaces the CREATE USER statement where the server cannot resolve the identity by name.')
output sqlCreateUserWithSid string = 'CREATE USER ${dbUser} WITH SID = ${identitySid}, TYPE = E;'

@description('The connection string an operator uses for `handler migrate` after `az login` as the SQL Entra admin.')
output sqlOperatorConnectionString string = 'Server=tcp:${sqlServer.properties.fullyQualifiedDomainName},1433;Database=${sqlDatabaseName};Authentication=Active Directory Default;Encrypt=True'

output emailSenderAddress string = emailSender

output emailEndpoint string = 'https://${communication.properties.hostName}'

output recordsAccountUrl string = recordsStorage.properties.primaryEndpoints.blob

output recordsContainerName string = recordsContainerName

output recordsSystemTopicName string = recordsTopic.name

@description('False until the second deployment (deployEventSubscription=true) has subscribed the blob trigger.')
output blobTriggerSubscribed bool = deployEventSubscription
