//! Reliable delivery over HTTP: a worker's loop (lease, acknowledge, nack) on every store, the
//! answers' shapes, long polls, idempotency keys, the dead-letter list, a task's own event
//! stream, and every refusal the contract names.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::cluster::Cluster;
use crate::common::redis::RedisServer;
use crate::common::{Api, TestApp, error_body, notifications, open_sse, spawn_app_with};

/// The settings of a test server on `store`; the reaper runs often so expiries come soon.
async fn server_on(store: &str, redis: Option<&RedisServer>, settings: &[(&str, &str)]) -> TestApp {
    let url = redis.map(RedisServer::url);
    let prefix = crate::common::redis::unique_prefix("leases");
    let mut pairs = vec![("STORE", store), ("QUEUE_REAP_INTERVAL_MS", "50")];
    if let Some(url) = &url {
        pairs.extend([
            ("REDIS_URL", url.as_str()),
            ("REDIS_PREFIX", prefix.as_str()),
        ]);
    }
    pairs.extend_from_slice(settings);
    spawn_app_with(&pairs).await
}

/// A server on each store: memory, embedded and (on `redis`) Redis.
async fn every_store(redis: &RedisServer) -> Vec<(&'static str, TestApp)> {
    vec![
        ("memory", server_on("memory", None, &[]).await),
        ("embedded", server_on("embedded", None, &[]).await),
        ("redis", server_on("redis", Some(redis), &[]).await),
    ]
}

async fn task_view(app: &TestApp, id: &str) -> Value {
    let response = app.get(&format!("/tasks/{id}")).await;
    assert_eq!(response.status(), 200, "GET /tasks/{id}");
    response.json().await.expect("a JSON body")
}

#[tokio::test]
async fn a_worker_leases_acknowledges_and_nacks_on_every_store() {
    let redis = RedisServer::start().await;
    for (store, app) in every_store(&redis).await {
        let first = app.enqueued("send invoice", 1).await;
        app.enqueued("resize image", 2).await;
        app.enqueued("later", 9).await;
        let batch = app.leased(&json!({"count": 2, "leaseMs": 60_000})).await;
        let tasks = batch["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 2, "{store}");
        let leased = &tasks[0];
        assert_eq!(leased["id"], first["id"], "{store}: in queue order");
        for field in ["task", "priority", "timestamp", "leaseId", "leaseExpiresAt"] {
            assert!(!leased[field].is_null(), "{store}: {field} in {leased}");
        }
        assert_eq!(
            (&leased["attempt"], &leased["maxAttempts"]),
            (&json!(1), &json!(5))
        );
        assert_eq!(batch["queueSize"], 1, "{store}");
        let status = app.queue_status().await;
        assert_eq!(
            (&status["size"], &status["leased"]),
            (&json!(1), &json!(2)),
            "{store}"
        );
        assert_eq!(
            status["nextTask"]["task"], "later",
            "{store}: leased tasks are hidden"
        );

        let acked = app.ack(leased).await;
        assert_eq!(acked.status(), 200, "{store}");
        let body: Value = acked.json().await.expect("JSON");
        assert_eq!(
            body,
            json!({"message": "Task acknowledged", "id": leased["id"]})
        );
        assert_eq!(
            app.ack(leased).await.status(),
            200,
            "{store}: a repeat is answered again"
        );
        let id = leased["id"].as_str().expect("an id");
        error_body(
            app.get(&format!("/tasks/{id}")).await,
            404,
            "task_not_found",
        )
        .await;

        let failed = &tasks[1];
        let nacked = app
            .nack(
                failed,
                json!({"error": "the image is corrupt", "delayMs": 60_000}),
            )
            .await;
        assert_eq!(nacked.status(), 200, "{store}");
        let nacked: Value = nacked.json().await.expect("JSON");
        assert_eq!(nacked["state"], "delayed", "{store}");
        assert!(nacked["availableAt"].as_u64().is_some(), "{store}");
        let view = task_view(&app, failed["id"].as_str().expect("an id")).await;
        assert_eq!(view["state"], "delayed", "{store}");
        assert_eq!(view["attempt"], 1, "{store}");
        assert_eq!(view["lastError"], "the image is corrupt", "{store}");
        assert_eq!(view["availableAt"], nacked["availableAt"], "{store}");
        error_body(app.ack(failed).await, 409, "lease_lost").await;
        assert_eq!(app.queue_status().await["delayed"], 1, "{store}");
        assert_eq!(
            app.drain_tasks().await,
            ["later"],
            "{store}: /dequeue as before"
        );
    }
}

#[tokio::test]
async fn a_batch_acknowledgement_answers_each_delivery() {
    let app = server_on("embedded", None, &[]).await;
    for n in 0..3 {
        app.enqueued(&format!("t{n}"), 1).await;
    }
    let batch = app.leased(&json!({"count": 3})).await;
    let tasks = batch["tasks"].as_array().expect("tasks");
    let acks = json!({"acks": [
        {"id": tasks[0]["id"], "leaseId": tasks[0]["leaseId"]},
        {"id": tasks[1]["id"], "leaseId": tasks[2]["leaseId"]},
        {"id": "5f0c3b7e-8a2d-4c1e-9b6f-2d4e8a1c7b3f", "leaseId": tasks[0]["leaseId"]},
        {"id": tasks[2]["id"], "leaseId": tasks[2]["leaseId"]},
    ]});
    let answered: Value = app
        .post_json("/tasks/ack", &acks)
        .await
        .json()
        .await
        .expect("JSON");
    let statuses: Vec<&Value> = answered["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| &result["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!(200), &json!(409), &json!(404), &json!(200)]
    );
    assert_eq!(answered["results"][1]["id"], tasks[1]["id"]);
    let status = app.queue_status().await;
    assert_eq!(
        status["leased"], 1,
        "the task with another's lease id is still leased"
    );
}

#[tokio::test]
async fn an_empty_lease_body_takes_one_task_for_the_default_lease() {
    let app = server_on("memory", None, &[("QUEUE_LEASE_MS", "45000")]).await;
    app.enqueued("job", 1).await;
    let before = backflow::clock::unix_millis();
    let response = app.post_raw("/tasks/lease", None, Vec::new()).await;
    assert_eq!(response.status(), 200);
    let batch: Value = response.json().await.expect("JSON");
    let ends = batch["tasks"][0]["leaseExpiresAt"]
        .as_u64()
        .expect("an end");
    assert!(
        (before + 45_000..before + 46_000).contains(&ends),
        "QUEUE_LEASE_MS: {ends}"
    );
    let empty: Value = app.leased(&json!({})).await;
    assert_eq!(empty, json!({"tasks": [], "queueSize": 0}));
}

#[tokio::test]
async fn a_long_poll_waits_for_a_task_and_answers_empty_when_none_comes() {
    let app = server_on("embedded", None, &[]).await;
    let poll = {
        let (client, url) = (app.client.clone(), app.url("/tasks/lease"));
        tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"waitMs": 10_000}))
                .send()
                .await
                .expect("sent");
            response.json::<Value>().await.expect("JSON")
        })
    };
    // Long enough for the poll to find the queue empty and wait; were it later, the poll would
    // take the task at once, which this test does not tell apart.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let enqueued = app.enqueued("wake up", 1).await;
    let batch = poll.await.expect("the poll answers");
    assert_eq!(batch["tasks"][0]["id"], enqueued["id"]);
    let none = app.leased(&json!({"waitMs": 200})).await;
    assert_eq!(none["tasks"], json!([]));
}

#[tokio::test]
async fn a_delayed_task_is_delivered_at_its_time_to_a_waiting_poll() {
    let app = server_on("memory", None, &[]).await;
    let response = app
        .post_json(
            "/enqueue",
            &json!({"task": "remind", "priority": 1, "delayMs": 300}),
        )
        .await;
    let enqueued: Value = response.json().await.expect("JSON");
    assert_eq!(enqueued["state"], "delayed");
    let available = enqueued["availableAt"].as_u64().expect("a time");
    assert_eq!(app.queue_status().await["delayed"], 1);
    error_body(app.dequeue().await, 404, "queue_empty").await;
    let batch = app.leased(&json!({"waitMs": 10_000})).await;
    assert_eq!(batch["tasks"][0]["id"], enqueued["id"]);
    let leased_at = batch["tasks"][0]["leaseExpiresAt"]
        .as_u64()
        .expect("an end")
        - 30_000;
    assert!(leased_at >= available, "not before its time");
}

#[tokio::test]
async fn an_expired_lease_is_delivered_again_and_announced() {
    let app = server_on("embedded", None, &[]).await;
    let enqueued = app.enqueued("fragile", 1).await;
    let id = enqueued["id"].as_str().expect("an id");
    let mut events = open_sse(&app, &format!("/notifications?task={id}"), None).await;
    assert_eq!(
        events.next_json().await["message"],
        "Connected to notification stream"
    );
    let first = app.leased(&json!({"leaseMs": 1000})).await["tasks"][0].clone();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("queue.expired") {
        let event = events.next_json().await;
        assert_eq!(event["taskId"], id, "only this task's events: {event}");
        seen.push(
            event["event"]
                .as_str()
                .expect("an application event")
                .to_owned(),
        );
    }
    assert_eq!(seen, ["queue.leased", "queue.expired"]);
    let again = app.leased(&json!({})).await["tasks"][0].clone();
    assert_eq!(
        (&again["id"], &again["attempt"]),
        (&enqueued["id"], &json!(2))
    );
    error_body(app.ack(&first).await, 409, "lease_lost").await;
    assert_eq!(app.ack(&again).await.status(), 200);
    assert_eq!(events.next_json().await["event"], "queue.leased");
    assert_eq!(events.next_json().await["event"], "queue.acked");
}

#[tokio::test]
async fn the_last_failure_dead_letters_and_the_list_retries_and_deletes() {
    let app = server_on("embedded", None, &[]).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let body = json!({"task": format!("doomed {n}"), "priority": 1, "maxAttempts": 1});
        let enqueued: Value = app
            .post_json("/enqueue", &body)
            .await
            .json()
            .await
            .expect("JSON");
        ids.push(enqueued["id"].clone());
    }
    let mut live = notifications(&app, None).await;
    for leased in app.leased(&json!({"count": 3})).await["tasks"]
        .as_array()
        .expect("tasks")
    {
        let nacked: Value = app
            .nack(leased, json!({"error": "no such customer"}))
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(nacked, json!({"id": leased["id"], "state": "dead"}));
    }
    loop {
        let event = live.next_json().await;
        if event["event"] == "queue.dead" {
            assert_eq!(
                (&event["cause"], &event["taskId"]),
                (&json!("nack"), &ids[0])
            );
            break;
        }
    }
    assert_eq!(app.queue_status().await["dead"], 3);
    let page: Value = app
        .get("/queue/dead?limit=2")
        .await
        .json()
        .await
        .expect("JSON");
    let listed: Vec<&Value> = page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert_eq!(listed, [&ids[0], &ids[1]], "oldest first");
    assert_eq!(page["tasks"][0]["lastError"], "no such customer");
    assert_eq!(page["tasks"][0]["state"], "dead");
    let next = page["next"].as_str().expect("a next page");
    let rest: Value = app
        .get(&format!("/queue/dead?limit=2&after={next}"))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(rest["tasks"].as_array().map(Vec::len), Some(1));
    assert!(rest.get("next").is_none(), "the last page");

    let first = ids[0].as_str().expect("an id");
    let retried = app
        .post_json(&format!("/queue/dead/{first}/retry"), &json!({}))
        .await;
    let retried: Value = retried.json().await.expect("JSON");
    assert_eq!(
        (&retried["state"], &retried["attempt"]),
        (&json!("queued"), &json!(0))
    );
    let second = ids[1].as_str().expect("an id");
    let url = app.url(&format!("/queue/dead/{second}"));
    let deleted = app.client.delete(&url).send().await.expect("sent");
    assert_eq!(deleted.status(), 200);
    let deleted = app.client.delete(&url).send().await.expect("sent");
    error_body(deleted, 404, "task_not_found").await;
    let retried_twice = app
        .post_json(&format!("/queue/dead/{first}/retry"), &json!({}))
        .await;
    error_body(retried_twice, 404, "task_not_found").await;
    assert_eq!(app.drain_tasks().await, ["doomed 0"]);
}

#[tokio::test]
async fn an_idempotency_key_gives_the_first_answer_again_and_refuses_another_body() {
    let app = server_on("embedded", None, &[]).await;
    let send = |key: &str, body: Value| {
        app.client
            .post(app.url("/enqueue"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let body = json!({"task": "charge card 42", "priority": 1});
    let first = send("charge-42", body.clone()).await.expect("sent");
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("JSON");
    let again = send("charge-42", body.clone()).await.expect("sent");
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("JSON");
    assert_eq!(again, first, "the first answer, the same id");
    assert_eq!(app.queue_status().await["size"], 1, "added once");
    let other = send(
        "charge-42",
        json!({"task": "charge card 43", "priority": 1}),
    );
    error_body(other.await.expect("sent"), 422, "idempotency_key_reused").await;
    for bad in ["has space", &"k".repeat(256)] {
        let refused = send(bad, body.clone()).await.expect("sent");
        let error = error_body(refused, 400, "invalid_input").await;
        assert_eq!(error["field"], "Idempotency-Key");
    }
}

#[tokio::test]
async fn bad_lease_requests_get_the_documented_refusals() {
    let app = server_on("memory", None, &[]).await;
    app.enqueued("job", 1).await;
    let leased = app.leased(&json!({})).await["tasks"][0].clone();
    let id = leased["id"].as_str().expect("an id");
    let unknown = "5f0c3b7e-8a2d-4c1e-9b6f-2d4e8a1c7b3f";
    for (path, body, status, code, field) in [
        (
            "/tasks/lease",
            json!({"count": 0}),
            400,
            "invalid_input",
            "count",
        ),
        (
            "/tasks/lease",
            json!({"count": 101}),
            400,
            "invalid_input",
            "count",
        ),
        (
            "/tasks/lease",
            json!({"leaseMs": 999}),
            400,
            "invalid_input",
            "leaseMs",
        ),
        (
            "/tasks/lease",
            json!({"waitMs": 30_001}),
            400,
            "invalid_input",
            "waitMs",
        ),
        (
            "/tasks/lease",
            json!({"count": "2"}),
            400,
            "invalid_input",
            "count",
        ),
        (
            "/tasks/not-a-uuid/ack",
            json!({"leaseId": leased["leaseId"]}),
            400,
            "invalid_input",
            "id",
        ),
        (
            &format!("/tasks/{id}/ack"),
            json!({}),
            400,
            "lease_id_required",
            "leaseId",
        ),
        (
            &format!("/tasks/{id}/ack"),
            json!({"leaseId": "x"}),
            400,
            "invalid_input",
            "leaseId",
        ),
        (
            &format!("/tasks/{unknown}/ack"),
            json!({"leaseId": leased["leaseId"]}),
            404,
            "task_not_found",
            "",
        ),
        (
            &format!("/tasks/{id}/ack"),
            json!({"leaseId": unknown}),
            409,
            "lease_lost",
            "",
        ),
        (
            &format!("/tasks/{id}/nack"),
            json!({"leaseId": leased["leaseId"], "error": "e".repeat(1025)}),
            400,
            "invalid_input",
            "error",
        ),
        (
            &format!("/tasks/{id}/nack"),
            json!({"leaseId": leased["leaseId"], "delayMs": -5}),
            400,
            "invalid_input",
            "delayMs",
        ),
        (
            &format!("/tasks/{id}/extend"),
            json!({"leaseId": leased["leaseId"], "leaseMs": 43_200_001}),
            400,
            "invalid_input",
            "leaseMs",
        ),
        (
            &format!("/tasks/{id}/extend"),
            json!({"leaseId": unknown}),
            409,
            "lease_lost",
            "",
        ),
        (
            "/tasks/ack",
            json!({"acks": []}),
            400,
            "invalid_input",
            "acks",
        ),
        (
            "/tasks/ack",
            json!({"acks": [{"id": id}]}),
            400,
            "invalid_input",
            "acks[0].leaseId",
        ),
        (
            "/enqueue",
            json!({"task": "t", "priority": 1, "delayMs": 2_592_000_001_u64}),
            400,
            "invalid_input",
            "delayMs",
        ),
        (
            "/enqueue",
            json!({"task": "t", "priority": 1, "maxAttempts": 0}),
            400,
            "invalid_input",
            "maxAttempts",
        ),
    ] {
        let response = app.post_json(path, &body).await;
        let error = error_body(response, status, code).await;
        if !field.is_empty() {
            assert_eq!(error["field"], field, "{path} {body}");
        }
    }
    for (path, field) in [
        ("/tasks/not-a-uuid", "id"),
        ("/queue/dead?limit=0", "limit"),
        ("/queue/dead?limit=1001", "limit"),
        ("/queue/dead?after=nope", "after"),
        (
            "/queue/dead?after=5f0c3b7e-8a2d-4c1e-9b6f-2d4e8a1c7b3f",
            "after",
        ),
        ("/notifications?task=nope", "task"),
    ] {
        let error = error_body(app.get(path).await, 400, "invalid_input").await;
        assert_eq!(error["field"], field, "{path}");
    }
    error_body(
        app.get(&format!("/tasks/{unknown}")).await,
        404,
        "task_not_found",
    )
    .await;
    let lease_by_get = app.get("/tasks/lease").await;
    assert_eq!(
        lease_by_get.status(),
        405,
        "leasing changes state: POST only"
    );
    let extended: Value = app
        .post_json(
            &format!("/tasks/{id}/extend"),
            &json!({"leaseId": leased["leaseId"], "leaseMs": 120_000}),
        )
        .await
        .json()
        .await
        .expect("JSON");
    assert!(extended["leaseExpiresAt"].as_u64() > leased["leaseExpiresAt"].as_u64());
}

#[tokio::test]
async fn a_long_poll_on_one_instance_wakes_on_an_enqueue_on_another() {
    let cluster = Cluster::start(2, &[]).await;
    let poll = {
        let (client, url) = (reqwest::Client::new(), cluster[0].url("/tasks/lease"));
        tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"waitMs": 20_000}))
                .send()
                .await
                .expect("sent");
            response.json::<Value>().await.expect("JSON")
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let enqueued = cluster[1].enqueued("across", 1).await;
    let batch = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the enqueue ends the wait (a guard against a hang)")
        .expect("the poll answers");
    assert_eq!(batch["tasks"][0]["id"], enqueued["id"]);
    let status = cluster[0].queue_status().await;
    assert_eq!(status["leased"], 1, "one queue for the whole cluster");
    let leased = &batch["tasks"][0];
    assert_eq!(
        cluster[1].ack(leased).await.status(),
        200,
        "a lease is valid on every instance"
    );
}
