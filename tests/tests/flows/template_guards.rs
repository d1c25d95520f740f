//! The template's security properties as tests: the JWT authorizer on every route but the
//! webhook receiver, the routes equal to `openapi.yaml`'s paths, recoverable and encrypted
//! tables with TTL where records expire, a stream mapping that reports item failures,
//! bisects and keeps what it gave up on, and policies that grant nothing the code never
//! calls. Each guard is shown to fail on a seeded mutation of a template copy.

use std::collections::{BTreeMap, BTreeSet};

use fintx_tests::repo_root;
use serde_json::Value;

/// The one route API Gateway leaves open: webhooks authenticate by signature.
const WEBHOOK_ROUTE: (&str, &str) = ("POST", "/v1/webhooks/{connector}");

/// Tables whose records expire (SPEC: TTL on idempotency and dedup records; rollups too).
const TABLES_WITH_TTL: [&str; 3] = ["IdempotencyTable", "WebhookEventsTable", "AnalyticsTable"];

/// The SDK operations the code calls, each with the IAM actions it needs. A call inside a
/// `TransactWriteItems` needs the item-level action of its kind, not a transaction action.
const SDK_CALLS: [(&str, &[&str]); 20] = [
    (".get_item()", &["dynamodb:GetItem"]),
    (".put_item()", &["dynamodb:PutItem"]),
    (".update_item()", &["dynamodb:UpdateItem"]),
    (".delete_item()", &["dynamodb:DeleteItem"]),
    (".query()", &["dynamodb:Query"]),
    (".scan()", &["dynamodb:Scan"]),
    (".batch_get_item()", &["dynamodb:BatchGetItem"]),
    (".batch_write_item()", &["dynamodb:BatchWriteItem"]),
    (".transact_get_items()", &["dynamodb:GetItem"]),
    ("TransactWriteItem::builder().put(", &["dynamodb:PutItem"]),
    ("TransactWriteItem::builder().update(", &["dynamodb:UpdateItem"]),
    ("TransactWriteItem::builder().delete(", &["dynamodb:DeleteItem"]),
    (
        "TransactWriteItem::builder().condition_check(",
        &["dynamodb:ConditionCheckItem"],
    ),
    (".generate_data_key()", &["kms:GenerateDataKey"]),
    (".decrypt()", &["kms:Decrypt"]),
    (".encrypt()", &["kms:Encrypt"]),
    (".generate_mac()", &["kms:GenerateMac"]),
    (".verify_mac()", &["kms:VerifyMac"]),
    (".send_message()", &["sqs:SendMessage"]),
    (".get_records()", &["dynamodb:GetRecords"]),
];

/// Per function (template logical id): the SDK calls its code makes, through the adapters
/// its `main.rs` builds. Checked against the code below: every call listed exists, and every
/// call the code makes is listed for some function.
const FUNCTION_CALLS: [(&str, &[&str]); 4] = [
    (
        "TransactionsFunction",
        &[
            ".get_item()",
            ".put_item()",
            ".query()",
            ".batch_get_item()",
            ".transact_get_items()",
            "TransactWriteItem::builder().put(",
            "TransactWriteItem::builder().update(",
            ".generate_data_key()",
            ".decrypt()",
            ".generate_mac()",
        ],
    ),
    (
        "BankWebhooksFunction",
        &[
            ".get_item()",
            ".put_item()",
            ".query()",
            ".transact_get_items()",
            "TransactWriteItem::builder().put(",
            "TransactWriteItem::builder().update(",
            "TransactWriteItem::builder().condition_check(",
            ".generate_data_key()",
            ".decrypt()",
            ".generate_mac()",
        ],
    ),
    (
        "HoldSweepFunction",
        &[
            ".query()",
            ".batch_get_item()",
            "TransactWriteItem::builder().put(",
            "TransactWriteItem::builder().update(",
        ],
    ),
    (
        "AnalyticsRollupsFunction",
        &[
            ".get_item()",
            ".query()",
            ".batch_get_item()",
            "TransactWriteItem::builder().put(",
            "TransactWriteItem::builder().update(",
        ],
    ),
];

/// Grants no code calls, each kept for a reason outside the code: the stream event source
/// mapping runs with the function's role, reads the ledger stream (encrypted under the data
/// key) and sends what it gave up on to the failure queue.
const INFRASTRUCTURE_GRANTS: [(&str, &[&str]); 1] = [(
    "AnalyticsRollupsFunction",
    &[
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "sqs:SendMessage",
        "kms:Decrypt",
    ],
)];

/// The code whose SDK calls the functions make: the functions' own sources and the
/// adapters they build.
const CODE_DIRS: [&str; 4] = [
    "shared/adapters/src",
    "functions/transactions/src",
    "functions/bank-webhooks/src",
    "functions/analytics-rollups/src",
];

fn parse_template(text: &str) -> Value {
    // The intrinsic-function tags (`!Ref`, `!GetAtt`, `!Sub`) become plain strings.
    serde_yaml::from_str(&text.replace('!', "")).expect("template.yaml parses")
}

fn template_text() -> String {
    std::fs::read_to_string(repo_root().join("template.yaml")).unwrap()
}

fn openapi() -> Value {
    let text = std::fs::read_to_string(repo_root().join("openapi.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, resource)| resource["Type"] == kind)
        .collect()
}

/// Every HttpApi event of every function: (function, method, path, event properties).
fn http_routes(template: &Value) -> Vec<(String, String, String, Value)> {
    let mut routes = Vec::new();
    for (name, function) in resources_of_type(template, "AWS::Serverless::Function") {
        let Some(events) = function["Properties"]["Events"].as_object() else {
            continue;
        };
        for event in events.values().filter(|event| event["Type"] == "HttpApi") {
            let properties = &event["Properties"];
            routes.push((
                name.clone(),
                properties["Method"].as_str().unwrap_or_default().to_uppercase(),
                properties["Path"].as_str().unwrap_or_default().to_owned(),
                properties.clone(),
            ));
        }
    }
    routes
}

fn guard_jwt_on_every_route_but_webhooks(template: &Value, _openapi: &Value) -> Result<(), String> {
    let apis = resources_of_type(template, "AWS::Serverless::HttpApi");
    if apis.len() != 1 {
        return Err(format!("expected one HttpApi, found {}", apis.len()));
    }
    let auth = &apis[0].1["Properties"]["Auth"];
    let default = auth["DefaultAuthorizer"].as_str().unwrap_or_default();
    let authorizer = &auth["Authorizers"][default];
    if default.is_empty()
        || authorizer["JwtConfiguration"]["issuer"].is_null()
        || authorizer["JwtConfiguration"]["audience"].is_null()
        || authorizer["IdentitySource"] != "$request.header.Authorization"
    {
        return Err(format!(
            "the HttpApi's default authorizer is not a JWT authorizer: {auth}"
        ));
    }
    for (function, method, path, properties) in http_routes(template) {
        let route_authorizer = properties["Auth"]["Authorizer"].as_str();
        let open = (method.as_str(), path.as_str()) == WEBHOOK_ROUTE;
        match (open, route_authorizer) {
            (true, Some("NONE")) => {}
            (true, other) => {
                return Err(format!(
                    "{method} {path} must authenticate by signature only, has {other:?}"
                ))
            }
            (false, None) => {}
            (false, Some(name)) if name == default => {}
            (false, Some(other)) => {
                return Err(format!(
                    "{function}: {method} {path} overrides the JWT authorizer with {other}"
                ))
            }
        }
    }
    Ok(())
}

fn guard_routes_equal_openapi_paths(template: &Value, openapi: &Value) -> Result<(), String> {
    let mut routes = BTreeSet::new();
    for (_, method, path, _) in http_routes(template) {
        if !routes.insert((method.clone(), path.clone())) {
            return Err(format!("route {method} {path} is declared twice"));
        }
    }
    let mut operations = BTreeSet::new();
    for (path, item) in openapi["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    if routes != operations {
        let only_template: Vec<_> = routes.difference(&operations).collect();
        let only_openapi: Vec<_> = operations.difference(&routes).collect();
        return Err(format!(
            "routes differ: only in template.yaml {only_template:?}, only in openapi.yaml {only_openapi:?}"
        ));
    }
    Ok(())
}

fn guard_tables_recoverable_encrypted_expiring(template: &Value, _openapi: &Value) -> Result<(), String> {
    let tables = resources_of_type(template, "AWS::DynamoDB::Table");
    if tables.len() != 4 {
        return Err(format!("expected four tables, found {}", tables.len()));
    }
    for (name, table) in tables {
        let properties = &table["Properties"];
        if properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] != true {
            return Err(format!("{name} has no point-in-time recovery"));
        }
        let sse = &properties["SSESpecification"];
        if sse["SSEEnabled"] != true || sse["SSEType"] != "KMS" || sse["KMSMasterKeyId"] != "Ref DataKey" {
            return Err(format!("{name} is not encrypted under the project key: {sse}"));
        }
        let ttl = &properties["TimeToLiveSpecification"];
        if TABLES_WITH_TTL.contains(&name.as_str()) && (ttl["Enabled"] != true || ttl["AttributeName"] != "expires_at")
        {
            return Err(format!("{name} has no TTL on expires_at: {ttl}"));
        }
    }
    Ok(())
}

fn guard_stream_mapping_keeps_failures(template: &Value, _openapi: &Value) -> Result<(), String> {
    let mut mappings = 0;
    for (name, function) in resources_of_type(template, "AWS::Serverless::Function") {
        let Some(events) = function["Properties"]["Events"].as_object() else {
            continue;
        };
        for event in events.values().filter(|event| event["Type"] == "DynamoDB") {
            mappings += 1;
            let properties = &event["Properties"];
            let reports = properties["FunctionResponseTypes"]
                .as_array()
                .is_some_and(|types| types.iter().any(|t| t == "ReportBatchItemFailures"));
            if !reports {
                return Err(format!(
                    "{name}: the stream mapping does not report batch item failures"
                ));
            }
            if properties["BisectBatchOnFunctionError"] != true {
                return Err(format!("{name}: the stream mapping does not bisect failing batches"));
            }
            let on_failure = &properties["DestinationConfig"]["OnFailure"];
            if on_failure["Type"] != "SQS" || on_failure["Destination"] != "GetAtt RollupsFailureQueue.Arn" {
                return Err(format!(
                    "{name}: the stream mapping has no on-failure queue: {on_failure}"
                ));
            }
            let retries = properties["MaximumRetryAttempts"].as_i64().unwrap_or(-1);
            if !(0..=10_000).contains(&retries) {
                return Err(format!("{name}: the stream mapping retries without bound"));
            }
        }
    }
    if mappings != 1 {
        return Err(format!("expected one stream mapping, found {mappings}"));
    }
    Ok(())
}

fn granted_actions(function: &Value) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for policy in function["Properties"]["Policies"].as_array().into_iter().flatten() {
        for statement in policy["Statement"].as_array().into_iter().flatten() {
            if statement["Effect"] != "Allow" {
                continue;
            }
            match &statement["Action"] {
                Value::String(action) => {
                    actions.insert(action.clone());
                }
                Value::Array(list) => actions.extend(list.iter().map(|a| a.as_str().unwrap_or("?").to_owned())),
                other => {
                    actions.insert(format!("unreadable {other}"));
                }
            }
        }
    }
    actions
}

fn actions_for(calls: &[&str]) -> BTreeSet<String> {
    let table: BTreeMap<&str, &[&str]> = SDK_CALLS.into_iter().collect();
    calls
        .iter()
        .flat_map(|call| {
            table
                .get(call)
                .unwrap_or_else(|| panic!("{call} is not in SDK_CALLS"))
                .iter()
        })
        .map(|action| (*action).to_owned())
        .collect()
}

fn guard_policies_grant_only_called_actions(template: &Value, _openapi: &Value) -> Result<(), String> {
    let functions = resources_of_type(template, "AWS::Serverless::Function");
    if functions.len() != FUNCTION_CALLS.len() {
        return Err(format!(
            "expected {} functions, found {}",
            FUNCTION_CALLS.len(),
            functions.len()
        ));
    }
    let infrastructure: BTreeMap<&str, &[&str]> = INFRASTRUCTURE_GRANTS.into_iter().collect();
    for (name, calls) in FUNCTION_CALLS {
        let function = &template["Resources"][name];
        if function.is_null() {
            return Err(format!("template has no {name}"));
        }
        let mut needed = actions_for(calls);
        needed.extend(
            infrastructure
                .get(name)
                .into_iter()
                .flat_map(|a| a.iter())
                .map(|a| (*a).to_owned()),
        );
        let granted = granted_actions(function);
        if granted.iter().any(|action| action.contains('*')) {
            return Err(format!("{name} grants a wildcard action: {granted:?}"));
        }
        let extra: Vec<_> = granted.difference(&needed).collect();
        if !extra.is_empty() {
            return Err(format!("{name} grants actions its code never calls: {extra:?}"));
        }
        let missing: Vec<_> = needed.difference(&granted).collect();
        if !missing.is_empty() {
            return Err(format!("{name} is not granted what its code calls: {missing:?}"));
        }
    }
    Ok(())
}

type Guard = fn(&Value, &Value) -> Result<(), String>;

const GUARDS: [(&str, Guard); 5] = [
    ("jwt", guard_jwt_on_every_route_but_webhooks),
    ("routes", guard_routes_equal_openapi_paths),
    ("tables", guard_tables_recoverable_encrypted_expiring),
    ("stream", guard_stream_mapping_keeps_failures),
    ("policies", guard_policies_grant_only_called_actions),
];

#[test]
fn the_template_passes_every_guard() {
    let template = parse_template(&template_text());
    let openapi = openapi();
    for (name, guard) in GUARDS {
        if let Err(problem) = guard(&template, &openapi) {
            panic!("guard {name}: {problem}");
        }
    }
}

/// Every source line of the shipped code, without comments, joined without whitespace so a
/// call split across lines (`TransactWriteItem::builder()\n.put(`) still reads as one.
fn code_without_whitespace() -> String {
    let mut code = String::new();
    for dir in CODE_DIRS {
        let mut files: Vec<_> = std::fs::read_dir(repo_root().join(dir))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines() {
                let line = line.split("//").next().unwrap_or_default();
                code.extend(line.chars().filter(|c| !c.is_whitespace()));
            }
        }
    }
    code
}

#[test]
fn the_sdk_calls_listed_per_function_are_the_calls_in_the_code() {
    let code = code_without_whitespace();
    let in_code: BTreeSet<&str> = SDK_CALLS
        .iter()
        .map(|(call, _)| *call)
        .filter(|call| code.contains(call))
        .collect();
    let listed: BTreeSet<&str> = FUNCTION_CALLS
        .iter()
        .flat_map(|(_, calls)| calls.iter().copied())
        .collect();
    assert!(in_code.len() >= 8, "the code was not read: {in_code:?}");
    assert_eq!(
        listed, in_code,
        "FUNCTION_CALLS names a call the code does not make, or the code makes a call no function lists"
    );
    for (function, calls) in FUNCTION_CALLS {
        let main = std::fs::read_to_string(repo_root().join(match function {
            "TransactionsFunction" => "functions/transactions/src/main.rs",
            "BankWebhooksFunction" => "functions/bank-webhooks/src/main.rs",
            "HoldSweepFunction" => "functions/transactions/src/bin/hold-sweep.rs",
            _ => "functions/analytics-rollups/src/main.rs",
        }))
        .unwrap();
        let builds_kms = main.contains("aws_sdk_kms::Client::new");
        let lists_kms = calls
            .iter()
            .any(|call| actions_for(&[call]).iter().any(|a| a.starts_with("kms:")));
        assert_eq!(
            builds_kms, lists_kms,
            "{function}: KMS calls listed do not match main.rs"
        );
    }
}

#[test]
fn each_guard_fails_on_a_seeded_mutation() {
    let original = template_text();
    let openapi = openapi();
    let seeded: [(&str, &str, &str); 12] = [
        (
            "jwt",
            "Path: /v1/analytics/tenant }",
            "Path: /v1/analytics/tenant, Auth: { Authorizer: NONE } }",
        ),
        ("jwt", "DefaultAuthorizer: JwtAuthorizer", "DefaultAuthorizer: NONE"),
        (
            "routes",
            "Path: \"/v1/payments/{id}\" }",
            "Path: \"/v1/payments/{id}/refund\" }",
        ),
        (
            "routes",
            "        GetPayment:\n",
            "        GetPaymentTwice:\n          Type: HttpApi\n          Properties: { ApiId: !Ref HttpApi, Method: GET, Path: /v1/payments/all }\n        GetPayment:\n",
        ),
        (
            "tables",
            "      TimeToLiveSpecification:\n        AttributeName: expires_at\n        Enabled: true\n      PointInTimeRecoverySpecification:\n        PointInTimeRecoveryEnabled: true\n      SSESpecification:\n        SSEEnabled: true\n        SSEType: KMS\n        KMSMasterKeyId: !Ref DataKey\n\n  WebhookEventsTable:",
            "      PointInTimeRecoverySpecification:\n        PointInTimeRecoveryEnabled: true\n      SSESpecification:\n        SSEEnabled: true\n        SSEType: KMS\n        KMSMasterKeyId: !Ref DataKey\n\n  WebhookEventsTable:",
        ),
        (
            "tables",
            "        PointInTimeRecoveryEnabled: true\n      SSESpecification:\n        SSEEnabled: true\n        SSEType: KMS\n        KMSMasterKeyId: !Ref DataKey\n\n  IdempotencyTable:",
            "        PointInTimeRecoveryEnabled: false\n      SSESpecification:\n        SSEEnabled: true\n        SSEType: KMS\n        KMSMasterKeyId: !Ref DataKey\n\n  IdempotencyTable:",
        ),
        (
            "tables",
            "        KMSMasterKeyId: !Ref DataKey\n\n  # Where",
            "        KMSMasterKeyId: alias/aws/dynamodb\n\n  # Where",
        ),
        (
            "stream",
            "BisectBatchOnFunctionError: true",
            "BisectBatchOnFunctionError: false",
        ),
        (
            "stream",
            "            FunctionResponseTypes:\n              - ReportBatchItemFailures\n",
            "",
        ),
        (
            "stream",
            "            DestinationConfig:\n              OnFailure:\n                Type: SQS\n                Destination: !GetAtt RollupsFailureQueue.Arn\n",
            "",
        ),
        (
            "policies",
            "                - dynamodb:BatchGetItem\n              Resource:\n                - !GetAtt LedgerTable.Arn",
            "                - dynamodb:BatchGetItem\n                - dynamodb:Scan\n              Resource:\n                - !GetAtt LedgerTable.Arn",
        ),
        (
            "policies",
            "            - Effect: Allow\n              Action: kms:GenerateMac\n              Resource: !GetAtt CursorMacKey.Arn\n      Events:\n        ReceiveWebhook:",
            "            - Effect: Allow\n              Action: kms:GenerateMac\n              Resource: !GetAtt CursorMacKey.Arn\n            - Effect: Allow\n              Action: kms:Encrypt\n              Resource: !GetAtt DataKey.Arn\n      Events:\n        ReceiveWebhook:",
        ),
    ];
    let guards: BTreeMap<&str, Guard> = GUARDS.into_iter().collect();
    let mut caught = BTreeSet::new();
    for (guard, from, to) in seeded {
        assert!(
            original.contains(from),
            "seed anchor {from:?} is gone from template.yaml"
        );
        let copy = parse_template(&original.replacen(from, to, 1));
        let outcome = guards[guard](&copy, &openapi);
        assert!(outcome.is_err(), "guard {guard} accepted a template with {to:?}");
        caught.insert(guard);
    }
    assert_eq!(caught.len(), GUARDS.len(), "a guard has no seeded mutation");
}

#[test]
fn the_routes_guard_fails_when_openapi_gains_a_path() {
    let template = parse_template(&template_text());
    let mut openapi = openapi();
    openapi["paths"]["/v1/refunds"] = serde_json::json!({"post": {"responses": {}}});
    assert!(guard_routes_equal_openapi_paths(&template, &openapi).is_err());
}

#[test]
fn the_transactions_route_table_is_what_the_template_deploys() {
    let template = parse_template(&template_text());
    let deployed: BTreeSet<(String, String)> = http_routes(&template)
        .into_iter()
        .filter(|(function, ..)| function == "TransactionsFunction")
        .map(|(_, method, path, _)| (method, path))
        .collect();
    let served: BTreeSet<(String, String)> = transactions::ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(served, deployed);
    for (method, path) in &served {
        let concrete = path.replace("{id}", "x");
        let (found, _) = transactions::find_route(method, &concrete).expect("a deployed route is served");
        assert_eq!((found.method, found.path), (method.as_str(), path.as_str()));
    }
    assert!(transactions::find_route("DELETE", "/v1/accounts").is_none());
    assert!(transactions::find_route("GET", "/v1/accounts/x/y").is_none());
}
