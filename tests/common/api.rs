//! The requests that the tests of every area send, written once for any server they talk to:
//! the server in this process ([`TestApp`](super::TestApp)), the real binary as a child
//! ([`ServerProcess`](super::process::ServerProcess)), or nginx in front of several
//! ([`Nginx`](super::nginx::Nginx)). Logging in, a token, enqueueing and draining the queue read
//! the same in every test, whichever server answers.

use std::net::SocketAddr;

use reqwest::{Method, Response};
use serde_json::{Value, json};

/// The development administrator every test server knows (`AUTH_USERS` unset).
pub const ADMIN: (&str, &str) = ("admin", "admin123");

/// A server under test, reached over HTTP. Every method panics if the request cannot be sent:
/// the server is expected to answer.
pub trait Api {
    /// The client the requests go through.
    fn client(&self) -> &reqwest::Client;

    /// Where the server listens.
    fn addr(&self) -> SocketAddr;

    /// Absolute URL of `path_and_query` on this server.
    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr())
    }

    /// `GET path`.
    async fn get(&self, path: &str) -> Response {
        sent(self.client().get(self.url(path))).await
    }

    /// `POST path` with a JSON body.
    async fn post_json(&self, path: &str, body: &Value) -> Response {
        sent(self.client().post(self.url(path)).json(body)).await
    }

    /// `POST path` with `body` sent as it is, under `content_type` (none when `None`): for
    /// bodies that are not valid JSON, or sent without the JSON content type.
    async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut request = self.client().post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        sent(request).await
    }

    /// `POST /login` with these credentials.
    async fn login(&self, username: &str, password: &str) -> Response {
        let credentials = json!({"username": username, "password": password});
        self.post_json("/login", &credentials).await
    }

    /// Logs in as [`ADMIN`]; returns the login body. Panics unless the login succeeds.
    async fn login_admin(&self) -> Value {
        let response = self.login(ADMIN.0, ADMIN.1).await;
        assert_eq!(response.status(), 200, "the administrator logs in");
        response.json().await.expect("a JSON login body")
    }

    /// A fresh bearer token of [`ADMIN`].
    async fn token(&self) -> String {
        token_of(&self.login_admin().await)
    }

    /// `GET /protected` with the bearer `token`.
    async fn protected(&self, token: &str) -> Response {
        self.with_token(Method::GET, "/protected", token).await
    }

    /// `POST /logout` with the bearer `token`.
    async fn logout(&self, token: &str) -> Response {
        self.with_token(Method::POST, "/logout", token).await
    }

    /// `method path` with the bearer `token`.
    async fn with_token(&self, method: Method, path: &str, token: &str) -> Response {
        sent(
            self.client()
                .request(method, self.url(path))
                .bearer_auth(token),
        )
        .await
    }

    /// `POST /enqueue` of `task` at `priority`.
    async fn enqueue(&self, task: &str, priority: i64) -> Response {
        let body = json!({"task": task, "priority": priority});
        self.post_json("/enqueue", &body).await
    }

    /// Enqueues `task` at `priority`; returns the answer's body. Panics unless it is a 200.
    async fn enqueued(&self, task: &str, priority: i64) -> Value {
        let response = self.enqueue(task, priority).await;
        assert_eq!(response.status(), 200, "enqueue {task}");
        response.json().await.expect("a JSON body")
    }

    /// `GET /dequeue`.
    async fn dequeue(&self) -> Response {
        self.get("/dequeue").await
    }

    /// Dequeues until the queue is empty; returns every dequeued body, in order. Panics on an
    /// answer other than 200 or the empty queue's 404.
    async fn drain(&self) -> Vec<Value> {
        let mut bodies = Vec::new();
        loop {
            let response = self.dequeue().await;
            match response.status().as_u16() {
                404 => return bodies,
                200 => bodies.push(response.json().await.expect("a JSON body")),
                other => panic!("dequeue answered {other} while draining"),
            }
        }
    }

    /// Dequeues until the queue is empty; returns the task texts, in order.
    async fn drain_tasks(&self) -> Vec<String> {
        self.drain()
            .await
            .iter()
            .map(|body| body["task"].as_str().expect("a task").to_owned())
            .collect()
    }

    /// `POST /tasks/lease` with `body`; returns the answer's body. Panics unless it is a 200.
    async fn leased(&self, body: &Value) -> Value {
        let response = self.post_json("/tasks/lease", body).await;
        assert_eq!(response.status(), 200, "lease {body}");
        response.json().await.expect("a JSON body")
    }

    /// `POST /tasks/{id}/ack` of the delivery `leased` (an item of a lease's `tasks`).
    async fn ack(&self, leased: &Value) -> Response {
        let id = leased["id"].as_str().expect("an id");
        let body = json!({"leaseId": leased["leaseId"]});
        self.post_json(&format!("/tasks/{id}/ack"), &body).await
    }

    /// `POST /tasks/{id}/nack` of the delivery `leased`, with `body`'s other members.
    async fn nack(&self, leased: &Value, body: Value) -> Response {
        let id = leased["id"].as_str().expect("an id");
        let mut body = body;
        body["leaseId"] = leased["leaseId"].clone();
        self.post_json(&format!("/tasks/{id}/nack"), &body).await
    }

    /// `GET /queue/status`'s body. Panics unless it is a 200.
    async fn queue_status(&self) -> Value {
        let response = self.get("/queue/status").await;
        assert_eq!(response.status(), 200, "queue status");
        response.json().await.expect("a JSON body")
    }

    /// The `/metrics` text.
    async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .text()
            .await
            .expect("metrics body")
    }

    /// Value of the first sample of `metric` whose line contains every `label` fragment.
    async fn metric_value(&self, metric: &str, labels: &[&str]) -> Option<f64> {
        super::metric_in(&self.metrics().await, metric, labels)
    }

    /// How many requests to `route` this server answered with `status`, by its own count.
    async fn answered(&self, route: &str, status: u16) -> f64 {
        let route = format!(r#"route="{route}""#);
        let status = format!(r#"status="{status}""#);
        self.metric_value("http_requests_total", &[&route, &status])
            .await
            .unwrap_or(0.0)
    }
}

/// The token of a login body.
pub fn token_of(login: &Value) -> String {
    login["token"].as_str().expect("a token").to_owned()
}

async fn sent(request: reqwest::RequestBuilder) -> Response {
    request.send().await.expect("request sent")
}
