//! Every route's success and error shapes, with a plain HTTP client.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_gcp_emulator::{Emulator, EmulatorHandle};
use serde_json::{Value, json};

const SECRETS: &str = "/v1/projects/p/secrets";

struct Api {
    emu: EmulatorHandle,
    http: reqwest::Client,
}

impl Api {
    async fn start() -> Self {
        Api {
            emu: Emulator::start().await.unwrap(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.emu.endpoint);
        let mut req = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body), None).await
    }

    async fn create(&self, id: &str) -> (u16, Value) {
        self.post(
            &format!("{SECRETS}?secretId={id}"),
            json!({"replication": {"automatic": {}}, "labels": {"team": "a"}, "annotations": {"description": "d"}}),
        )
        .await
    }

    async fn add(&self, id: &str, data: &[u8]) -> (u16, Value) {
        self.post(
            &format!("{SECRETS}/{id}:addVersion"),
            json!({"payload": {"data": B64.encode(data)}}),
        )
        .await
    }
}

fn assert_error(got: &(u16, Value), code: u16, status: &str) {
    assert_eq!(got.0, code, "{:?}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{:?}", got.1);
    assert_eq!(got.1["error"]["status"], status, "{:?}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test]
async fn secrets_create_get_list_delete() {
    let api = Api::start().await;
    let (code, s) = api.create("k1").await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["name"], "projects/p/secrets/k1");
    assert_eq!(s["replication"], json!({"automatic": {}}));
    assert_eq!(s["labels"], json!({"team": "a"}));
    assert_eq!(s["annotations"], json!({"description": "d"}));
    assert!(chrono::DateTime::parse_from_rfc3339(s["createTime"].as_str().unwrap()).is_ok());

    assert_error(&api.create("k1").await, 409, "ALREADY_EXISTS");
    assert_error(&api.create("bad%20id").await, 400, "INVALID_ARGUMENT");
    assert_error(
        &api.post(&format!("{SECRETS}?secretId=norepl"), json!({}))
            .await,
        400,
        "INVALID_ARGUMENT",
    );
    assert_error(
        &api.call(
            "POST",
            &format!("{SECRETS}?secretId=x"),
            Some(Value::String("{".into())),
            None,
        )
        .await,
        400,
        "INVALID_ARGUMENT",
    );

    let (code, got) = api.get(&format!("{SECRETS}/k1")).await;
    assert_eq!((code, &got["name"]), (200, &json!("projects/p/secrets/k1")));
    assert_error(&api.get(&format!("{SECRETS}/nope")).await, 404, "NOT_FOUND");

    for id in ["k2", "k3"] {
        assert_eq!(api.create(id).await.0, 200);
    }
    let (_, page1) = api.get(&format!("{SECRETS}?pageSize=2")).await;
    assert_eq!(page1["secrets"].as_array().unwrap().len(), 2);
    assert_eq!(page1["totalSize"], 3);
    let token = page1["nextPageToken"].as_str().unwrap();
    let (_, page2) = api
        .get(&format!("{SECRETS}?pageSize=2&pageToken={token}"))
        .await;
    assert_eq!(page2["secrets"][0]["name"], "projects/p/secrets/k3");
    assert!(page2.get("nextPageToken").is_none(), "{page2}");
    assert_error(
        &api.get(&format!("{SECRETS}?pageToken=zz")).await,
        400,
        "INVALID_ARGUMENT",
    );
    assert_error(
        &api.get(&format!("{SECRETS}?pageSize=-1")).await,
        400,
        "INVALID_ARGUMENT",
    );
    // Other projects are separate.
    let (_, other) = api.get("/v1/projects/q/secrets").await;
    assert!(other.get("secrets").is_none(), "{other}");

    let (code, _) = api
        .call("DELETE", &format!("{SECRETS}/k1"), None, None)
        .await;
    assert_eq!(code, 200);
    assert_error(&api.get(&format!("{SECRETS}/k1")).await, 404, "NOT_FOUND");
    assert_error(
        &api.call("DELETE", &format!("{SECRETS}/k1"), None, None)
            .await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn versions_add_access_list_and_states() {
    let api = Api::start().await;
    api.create("k").await;
    assert_error(
        &api.get(&format!("{SECRETS}/k/versions/latest:access"))
            .await,
        404,
        "NOT_FOUND",
    );
    let (code, v1) = api.add("k", b"first").await;
    assert_eq!(code, 200, "{v1}");
    assert_eq!(v1["name"], "projects/p/secrets/k/versions/1");
    assert_eq!(v1["state"], "ENABLED");
    assert_eq!(v1["clientSpecifiedPayloadChecksum"], false);
    api.add("k", b"second").await;

    // A checksum is checked when given (a decimal string, as int64 in JSON).
    let crc = crc32c::crc32c(b"third").to_string();
    let (code, v3) = api
        .post(
            &format!("{SECRETS}/k:addVersion"),
            json!({"payload": {"data": B64.encode(b"third"), "dataCrc32c": crc}}),
        )
        .await;
    assert_eq!(code, 200, "{v3}");
    assert_eq!(v3["clientSpecifiedPayloadChecksum"], true);
    let bad = api
        .post(
            &format!("{SECRETS}/k:addVersion"),
            json!({"payload": {"data": B64.encode(b"x"), "dataCrc32c": "1"}}),
        )
        .await;
    assert_error(&bad, 400, "INVALID_ARGUMENT");
    let big = api.add("k", &vec![b'a'; 64 * 1024 + 1]).await;
    assert_error(&big, 400, "INVALID_ARGUMENT");
    assert_eq!(api.add("k", &vec![b'a'; 64 * 1024]).await.0, 200);
    assert_error(&api.add("nope", b"x").await, 404, "NOT_FOUND");

    // `latest` is the newest; access returns the real name and the checksum.
    let (code, acc) = api
        .get(&format!("{SECRETS}/k/versions/latest:access"))
        .await;
    assert_eq!(code, 200);
    assert_eq!(acc["name"], "projects/p/secrets/k/versions/4");
    let (_, acc) = api.get(&format!("{SECRETS}/k/versions/2:access")).await;
    assert_eq!(
        B64.decode(acc["payload"]["data"].as_str().unwrap())
            .unwrap(),
        b"second"
    );
    assert_eq!(
        acc["payload"]["dataCrc32c"],
        crc32c::crc32c(b"second").to_string()
    );

    // Listing: newest first, paginated; enums as numbers when asked.
    let (_, list) = api.get(&format!("{SECRETS}/k/versions?pageSize=3")).await;
    let names: Vec<&str> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.last().unwrap(), &"projects/p/secrets/k/versions/2");
    assert_eq!(names[0], "projects/p/secrets/k/versions/4");
    assert!(list["nextPageToken"].is_string());
    let (_, ints) = api
        .get(&format!(
            "{SECRETS}/k/versions/1?%24alt=json%3Benum-encoding%3Dint"
        ))
        .await;
    assert_eq!(ints["state"], 1);

    // Disable, enable, destroy.
    let path = format!("{SECRETS}/k/versions/2");
    let (_, v) = api.post(&format!("{path}:disable"), json!({})).await;
    assert_eq!(v["state"], "DISABLED");
    let denied = api.get(&format!("{path}:access")).await;
    assert_error(&denied, 400, "FAILED_PRECONDITION");
    assert!(
        denied.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DISABLED state")
    );
    let (_, v) = api.post(&format!("{path}:enable"), json!({})).await;
    assert_eq!(v["state"], "ENABLED");
    let (_, v) = api.post(&format!("{path}:destroy"), json!({})).await;
    assert_eq!(v["state"], "DESTROYED");
    assert!(v["destroyTime"].is_string());
    let gone = api.get(&format!("{path}:access")).await;
    assert_error(&gone, 400, "FAILED_PRECONDITION");
    assert!(
        gone.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DESTROYED state")
    );
    assert_error(
        &api.post(&format!("{path}:enable"), json!({})).await,
        400,
        "FAILED_PRECONDITION",
    );
    assert_eq!(api.get(&path).await.1["state"], "DESTROYED");

    assert_error(
        &api.get(&format!("{SECRETS}/k/versions/99")).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &api.get(&format!("{SECRETS}/k/versions/abc")).await,
        400,
        "INVALID_ARGUMENT",
    );
    assert_error(
        &api.get(&format!("{SECRETS}/nope/versions")).await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn tokens_stop_and_restart() {
    let api = Api::start().await;
    api.create("k").await;
    api.emu.require_token(Some("good"));
    assert_error(
        &api.get(&format!("{SECRETS}/k")).await,
        401,
        "UNAUTHENTICATED",
    );
    assert_error(
        &api.call("GET", &format!("{SECRETS}/k"), None, Some("bad"))
            .await,
        403,
        "PERMISSION_DENIED",
    );
    assert_eq!(
        api.call("GET", &format!("{SECRETS}/k"), None, Some("good"))
            .await
            .0,
        200
    );
    api.emu.require_token(None);

    api.emu.stop().await;
    assert!(!api.emu.is_running());
    let url = format!("{}{SECRETS}/k", api.emu.endpoint);
    assert!(
        reqwest::Client::new().get(&url).send().await.is_err(),
        "a stopped emulator answered"
    );
    api.emu.restart().await.unwrap();
    assert_eq!(
        api.get(&format!("{SECRETS}/k")).await.0,
        200,
        "data kept across a restart"
    );
}
