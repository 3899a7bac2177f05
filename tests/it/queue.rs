//! The priority queue over HTTP: ordering, validation, limits, concurrency and restarts.

use std::collections::HashSet;

use backflow::clock::unix_millis;
use serde_json::{Value, json};

use crate::common::{
    Api, TestApp, error_body, live_events, next_app_event, spawn_app, spawn_app_with, spawn_config,
    test_config,
};

/// Dequeues the next task; panics unless there is one.
async fn dequeue(app: &TestApp) -> Value {
    let response = app.dequeue().await;
    assert_eq!(response.status(), 200, "dequeue");
    response.json().await.expect("JSON body")
}

#[tokio::test]
async fn lower_numbers_leave_first_and_equal_priorities_in_arrival_order() {
    let app = spawn_app().await;
    for (task, priority) in [
        ("report", 3),
        ("payment A", 1),
        ("email", 2),
        ("payment B", 1),
        ("cleanup", 3),
        ("urgent", -10),
        ("payment C", 1),
    ] {
        app.enqueued(task, priority).await;
    }
    assert_eq!(
        app.drain_tasks().await,
        [
            "urgent",
            "payment A",
            "payment B",
            "payment C",
            "email",
            "report",
            "cleanup"
        ]
    );
}

#[tokio::test]
async fn enqueue_answers_with_an_id_the_task_and_the_queue_size() {
    let app = spawn_app().await;
    let first = app.enqueued("Process payment", 1).await;
    assert_eq!(first["message"], "Task enqueued successfully");
    assert_eq!(first["task"], "Process payment");
    assert_eq!(first["priority"], 1);
    assert_eq!(first["queueSize"], 1);
    let id = uuid::Uuid::parse_str(first["id"].as_str().expect("id")).expect("a UUID");
    assert_eq!(id.get_version_num(), 4);

    let second = app.enqueued("Send email", 2).await;
    assert_eq!(second["queueSize"], 2);
    assert_ne!(second["id"], first["id"]);
}

#[tokio::test]
async fn dequeue_returns_the_task_with_its_enqueue_timestamp() {
    let app = spawn_app().await;
    let before = unix_millis();
    let enqueued = app.enqueued("Process payment", 1).await;
    let after = unix_millis();
    app.enqueued("Send email", 2).await;

    let body = dequeue(&app).await;
    assert_eq!(body["message"], "Task dequeued");
    assert_eq!(body["id"], enqueued["id"]);
    assert_eq!(body["task"], "Process payment");
    assert_eq!(body["priority"], 1);
    assert_eq!(body["queueSize"], 1);
    let timestamp = body["timestamp"].as_u64().expect("milliseconds");
    assert!(
        (before..=after).contains(&timestamp),
        "{before} <= {timestamp} <= {after}"
    );
}

#[tokio::test]
async fn post_dequeue_works_like_get() {
    let app = spawn_app().await;
    app.enqueued("first", 1).await;
    let response = app
        .client
        .post(app.url("/dequeue"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["task"], "first");
    assert_eq!(body["queueSize"], 0);
}

#[tokio::test]
async fn dequeue_from_an_empty_queue_is_a_json_404() {
    let app = spawn_app().await;
    let body = error_body(app.get("/dequeue").await, 404, "queue_empty").await;
    assert_eq!(body["error"], "Queue is empty");
    let posted = app
        .client
        .post(app.url("/dequeue"))
        .send()
        .await
        .expect("sent");
    error_body(posted, 404, "queue_empty").await;
}

#[tokio::test]
async fn status_shows_the_size_and_the_next_task() {
    let app = spawn_app().await;
    assert_eq!(
        app.queue_status().await,
        json!({"size": 0, "isEmpty": true, "nextTask": null, "delayed": 0, "leased": 0, "dead": 0})
    );
    app.enqueued("later", 5).await;
    app.enqueued("sooner", 1).await;
    assert_eq!(
        app.queue_status().await,
        json!({"size": 2, "isEmpty": false, "nextTask": {"task": "sooner", "priority": 1},
            "delayed": 0, "leased": 0, "dead": 0})
    );
    assert_eq!(
        app.queue_status().await["size"],
        2,
        "status does not dequeue"
    );
}

#[tokio::test]
async fn missing_fields_get_the_contract_messages() {
    let app = spawn_app().await;
    for body in [
        json!({"priority": 1}),
        json!({"task": null, "priority": 1}),
        json!({}),
    ] {
        let error = error_body(app.post_json("/enqueue", &body).await, 400, "task_required").await;
        assert_eq!(error["error"], "Task is required", "{body}");
        assert_eq!(error["field"], "task", "{body}");
    }
    for body in [json!({"task": "t"}), json!({"task": "t", "priority": null})] {
        let error = error_body(
            app.post_json("/enqueue", &body).await,
            400,
            "priority_required",
        )
        .await;
        assert_eq!(error["error"], "Priority is required (number)", "{body}");
        assert_eq!(error["field"], "priority", "{body}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_or_without_a_length_and_enqueue_nothing() {
    let app = spawn_app_with(&[("BODY_LIMIT_BYTES", "64")]).await;
    // `{"task":"","priority":1}` is 24 bytes; the task text makes up the rest.
    let body_of = |len: usize| format!(r#"{{"task":"{}","priority":1}}"#, "x".repeat(len - 24));
    let post = |body: reqwest::Body| app.post_raw("/enqueue", Some("application/json"), body);

    let at_limit = body_of(64);
    assert_eq!(at_limit.len(), 64);
    let accepted = post(at_limit.into()).await;
    assert_eq!(
        accepted.status(),
        200,
        "a body of exactly the limit is read"
    );

    let over = body_of(65);
    let refused = error_body(post(over.clone().into()).await, 413, "payload_too_large").await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|m| m.contains("64 bytes")),
        "the message states the limit: {refused}"
    );
    // Sent in chunks, with no Content-Length to refuse it by: counted as it arrives.
    let (head, tail) = over.split_at(40);
    let chunks =
        futures_util::stream::iter([head.to_owned(), tail.to_owned()].map(Ok::<_, std::io::Error>));
    let chunked = post(reqwest::Body::wrap_stream(chunks)).await;
    error_body(chunked, 413, "payload_too_large").await;

    assert_eq!(
        app.queue_status().await["size"],
        1,
        "only the accepted body was enqueued"
    );
}

#[tokio::test]
async fn a_priority_that_is_not_a_number_is_refused() {
    let app = spawn_app().await;
    for priority in [json!("1"), json!(true), json!([1]), json!({"value": 1})] {
        let body = json!({"task": "t", "priority": priority});
        let error = error_body(app.post_json("/enqueue", &body).await, 400, "invalid_input").await;
        assert_eq!(error["error"], "Priority must be a number", "{body}");
        assert_eq!(error["field"], "priority");
    }
}

#[tokio::test]
async fn a_fractional_or_out_of_range_priority_names_the_range() {
    let app = spawn_app().await;
    for priority in [
        json!(1.5),
        json!(9_007_199_254_740_993_u64),
        json!(-9_007_199_254_740_993_i64),
        json!(1e300),
    ] {
        let body = json!({"task": "t", "priority": priority});
        let error = error_body(app.post_json("/enqueue", &body).await, 400, "invalid_input").await;
        assert_eq!(error["field"], "priority");
        let message = error["error"].as_str().expect("message");
        assert!(
            message.starts_with("Priority must be an integer between -2^53 and 2^53 (got "),
            "{message}"
        );
    }
    assert_eq!(app.queue_status().await["size"], 0, "nothing was enqueued");
}

#[tokio::test]
async fn priorities_at_the_bounds_and_whole_floats_are_accepted() {
    let app = spawn_app().await;
    for (priority, expected) in [
        (
            json!(9_007_199_254_740_992_u64),
            json!(9_007_199_254_740_992_u64),
        ),
        (
            json!(-9_007_199_254_740_992_i64),
            json!(-9_007_199_254_740_992_i64),
        ),
        (json!(2.0), json!(2)),
    ] {
        let response = app
            .post_json("/enqueue", &json!({"task": "t", "priority": priority}))
            .await;
        assert_eq!(response.status(), 200, "{priority}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["priority"], expected);
    }
}

#[tokio::test]
async fn a_task_of_the_wrong_type_or_length_names_the_range() {
    let app = spawn_app().await;
    for task in [json!(""), json!(42), json!(["a"]), json!("é".repeat(1025))] {
        let body = json!({"task": task, "priority": 1});
        let error = error_body(app.post_json("/enqueue", &body).await, 400, "invalid_input").await;
        assert_eq!(error["field"], "task");
        let message = error["error"].as_str().expect("message");
        assert!(message.contains("1 to 1024 characters"), "{message}");
    }
}

#[tokio::test]
async fn task_length_is_counted_in_characters_not_bytes() {
    let app = spawn_app().await;
    let widest = "é".repeat(1024);
    let body = app.enqueued(&widest, 1).await;
    assert_eq!(body["task"], widest.as_str());
}

#[tokio::test]
async fn malformed_or_non_object_bodies_are_refused() {
    let app = spawn_app().await;
    let malformed = app
        .post_raw(
            "/enqueue",
            Some("application/json"),
            r#"{"task": "t", "priority": "#,
        )
        .await;
    error_body(malformed, 400, "invalid_json").await;

    let error = error_body(
        app.post_json("/enqueue", &json!(["t", 1])).await,
        400,
        "invalid_input",
    )
    .await;
    assert_eq!(error["field"], "body");

    let untyped = app
        .post_raw("/enqueue", None, r#"{"task":"t","priority":1}"#)
        .await;
    error_body(untyped, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let app = spawn_app_with(&[("QUEUE_CAPACITY", "2")]).await;
    app.enqueued("a", 1).await;
    app.enqueued("b", 1).await;
    let response = app.enqueue("c", 0).await;
    assert!(response.headers().contains_key("retry-after"));
    error_body(response, 503, "queue_full").await;

    dequeue(&app).await;
    let body = app.enqueued("c", 0).await;
    assert_eq!(body["queueSize"], 2, "room again once a task left");
}

#[tokio::test]
async fn queue_size_is_exported_as_a_metric() {
    let app = spawn_app().await;
    app.enqueued("a", 1).await;
    app.enqueued("b", 1).await;
    app.enqueued("c", 1).await;
    dequeue(&app).await;
    assert_eq!(app.metric_value("queue_size", &[]).await, Some(2.0));
}

#[tokio::test]
async fn concurrent_clients_lose_and_duplicate_nothing() {
    const CLIENTS: usize = 300;
    let app = spawn_app().await;
    let enqueues = (0..CLIENTS).map(|i| {
        let app = &app;
        async move {
            let priority = i64::try_from(i % 7).expect("small");
            app.enqueued(&format!("task-{i}"), priority).await["id"]
                .as_str()
                .expect("id")
                .to_owned()
        }
    });
    let ids: Vec<String> = futures_util::future::join_all(enqueues).await;
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        CLIENTS,
        "unique ids"
    );
    assert_eq!(app.queue_status().await["size"], CLIENTS);

    let dequeues = (0..CLIENTS).map(|_| dequeue(&app));
    let bodies: Vec<Value> = futures_util::future::join_all(dequeues).await;
    let mut got: Vec<String> = bodies
        .iter()
        .map(|b| b["task"].as_str().expect("task").to_owned())
        .collect();
    got.sort();
    let mut expected: Vec<String> = (0..CLIENTS).map(|i| format!("task-{i}")).collect();
    expected.sort();
    assert_eq!(got, expected, "exactly the enqueued tasks, each once");
    let got_ids: HashSet<&str> = bodies
        .iter()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(got_ids, ids.iter().map(String::as_str).collect());

    let sizes: HashSet<u64> = bodies
        .iter()
        .map(|b| b["queueSize"].as_u64().expect("size"))
        .collect();
    assert_eq!(sizes, (0..CLIENTS as u64).collect(), "each size seen once");
    error_body(app.get("/dequeue").await, 404, "queue_empty").await;
}

#[tokio::test]
async fn the_queue_survives_a_graceful_restart_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_config(test_config(dir.path(), &[])).await;
    let mut enqueued = Vec::new();
    for (task, priority) in [("b1", 2), ("a1", 1), ("b2", 2), ("a2", 1), ("b3", 2)] {
        enqueued.push(app.enqueued(task, priority).await);
    }
    let first = dequeue(&app).await;
    assert_eq!(first["task"], "a1");
    app.stop().await;

    let app = spawn_config(test_config(dir.path(), &[])).await;
    assert_eq!(app.queue_status().await["size"], 4);
    let next = dequeue(&app).await;
    assert_eq!(next["task"], "a2");
    assert_eq!(next["id"], enqueued[3]["id"], "same id after restart");
    app.enqueued("b4", 2).await;
    assert_eq!(app.drain_tasks().await, ["b1", "b2", "b3", "b4"]);
    app.stop().await;

    let app = spawn_config(test_config(dir.path(), &[])).await;
    assert_eq!(
        app.queue_status().await["size"],
        0,
        "an emptied queue stays empty"
    );
}

#[tokio::test]
async fn a_stored_queue_larger_than_the_capacity_is_kept_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_config(test_config(dir.path(), &[])).await;
    for task in ["a", "b", "c"] {
        app.enqueued(task, 1).await;
    }
    app.stop().await;

    let app = spawn_config(test_config(dir.path(), &[("QUEUE_CAPACITY", "2")])).await;
    assert_eq!(app.queue_status().await["size"], 3);
    let refused = app.enqueue("d", 0).await;
    error_body(refused, 503, "queue_full").await;
    assert_eq!(app.drain_tasks().await, ["a", "b", "c"]);
}

#[tokio::test]
async fn enqueue_and_dequeue_publish_events() {
    let app = spawn_app().await;
    let mut live = live_events(&app).await;

    let enqueued = app.enqueued("Process payment", 1).await;
    assert_eq!(app.enqueue("", 1).await.status(), 400);
    assert_eq!(app.dequeue().await.status(), 200);

    let event = next_app_event(&mut live, "queue.").await;
    assert_eq!(event["event"], "queue.enqueued");
    assert!(event["id"].is_u64(), "the event's own id: {event}");
    assert_eq!(event["taskId"], enqueued["id"]);
    assert_eq!(event["task"], "Process payment");
    assert_eq!(event["priority"], 1);
    assert_eq!(event["queueSize"], 1);
    assert_eq!(event["type"], "info");
    let event = next_app_event(&mut live, "queue.").await;
    assert_eq!(
        event["event"], "queue.dequeued",
        "a refused enqueue publishes nothing"
    );
    assert_eq!(event["taskId"], enqueued["id"]);
    assert_eq!(event["task"], "Process payment");
    assert_eq!(event["priority"], 1);
    assert_eq!(event["queueSize"], 0);

    app.stop().await;
}
