//! Several instances on one real Redis behave as one server: one queue, one revocation list,
//! one event stream with global ids, one notification producer, one failed-login budget; a
//! Redis outage answers 503 at once and everything recovers by itself; and the same holds
//! through nginx, the deployment's load balancer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

use crate::common::cluster::Cluster;
use crate::common::nginx::Nginx;
use crate::common::redis::{Persistence, RedisServer};
use crate::common::{Api, SseStream, concurrent_gets, eventually, notifications};

/// A bound on how long an answer may take while Redis is down: far above the one second the
/// server allows itself, far below a hang.
const OUTAGE_GUARD: Duration = Duration::from_secs(5);

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

#[tokio::test]
async fn one_queue_for_every_instance_by_priority_then_arrival() {
    let cluster = Cluster::start(2, &[]).await;
    let max = 1_i64 << 53;
    let tasks = [
        ("b1", 5),
        ("lowest", max),
        ("a1", 1),
        ("b2", 5),
        ("highest", -max),
        ("a2", 1),
        ("b3", 5),
    ];
    for (n, (task, priority)) in tasks.iter().enumerate() {
        cluster[n % 2].enqueued(task, *priority).await;
    }
    let status = cluster[1].queue_status().await;
    assert_eq!(status["size"], 7);
    assert_eq!(status["nextTask"]["task"], "highest");
    let mut drained = Vec::new();
    for n in 0..tasks.len() {
        let body = json_of(cluster[n % 2].dequeue().await).await;
        drained.push(body["task"].as_str().expect("a task").to_owned());
    }
    assert_eq!(drained, ["highest", "a1", "a2", "b1", "b2", "b3", "lowest"]);
    assert_eq!(cluster[0].dequeue().await.status(), 404);
}

#[tokio::test]
async fn concurrent_dequeues_on_every_instance_take_each_task_exactly_once() {
    let cluster = Cluster::start(2, &[]).await;
    let mut enqueued = HashSet::new();
    for n in 0..120 {
        let body = cluster[n % 2]
            .enqueued(&format!("t{n}"), n as i64 % 4)
            .await;
        enqueued.insert(body["id"].as_str().expect("an id").to_owned());
    }
    let dequeues = futures_util::stream::iter(0..160)
        .map(|n| {
            let cluster = &cluster;
            async move { cluster[n % 2].dequeue().await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut taken = Vec::new();
    for response in dequeues {
        match response.status().as_u16() {
            200 => taken.push(
                json_of(response).await["id"]
                    .as_str()
                    .expect("an id")
                    .to_owned(),
            ),
            404 => {}
            other => panic!("dequeue answered {other}"),
        }
    }
    let distinct: HashSet<String> = taken.iter().cloned().collect();
    assert_eq!(taken.len(), distinct.len(), "no task was handed out twice");
    assert_eq!(distinct, enqueued, "every task was handed out");
}

#[tokio::test]
async fn the_capacity_holds_under_concurrent_enqueues_on_every_instance() {
    let cluster = Cluster::start(2, &[("QUEUE_CAPACITY", "30")]).await;
    let answers = futures_util::stream::iter(0..80)
        .map(|n| {
            let cluster = &cluster;
            async move {
                cluster[n % 2]
                    .enqueue(&format!("t{n}"), 1)
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<u16>>()
        .await;
    assert_eq!(answers.iter().filter(|s| **s == 200).count(), 30);
    assert_eq!(answers.iter().filter(|s| **s == 503).count(), 50);
    assert_eq!(cluster[1].queue_status().await["size"], 30);
}

#[tokio::test]
async fn a_logout_on_one_instance_is_refused_by_every_instance_at_once() {
    let cluster = Cluster::start(2, &[]).await;
    let token = cluster[0].token().await;
    assert_eq!(cluster[1].protected(&token).await.status(), 200);
    assert_eq!(cluster[1].logout(&token).await.status(), 200);
    for instance in [0, 1] {
        let body = json_of(cluster[instance].protected(&token).await).await;
        assert_eq!(body["code"], "token_revoked", "instance {instance}");
    }
    assert_eq!(
        cluster[0].logout(&token).await.status(),
        401,
        "a second logout, on the other instance, finds it revoked"
    );
}

#[tokio::test]
async fn concurrent_checks_each_get_the_answer_for_their_own_token() {
    let cluster = Cluster::start(2, &[("LOGIN_SUCCESS_MAX_PER_MINUTE", "1000")]).await;
    let mut tokens = Vec::new();
    for n in 0..12 {
        let token = cluster[n % 2].token().await;
        let revoked = n % 3 == 0;
        if revoked {
            assert_eq!(cluster[n % 2].logout(&token).await.status(), 200);
        }
        tokens.push((token, revoked));
    }
    // Checks arriving together are answered by one batched round trip: each must still get
    // its own token's answer.
    let answers = futures_util::stream::iter(0..240)
        .map(|n| {
            let (token, revoked) = &tokens[n % tokens.len()];
            let cluster = &cluster;
            async move {
                let status = cluster[n % 2].protected(token).await.status();
                (status.as_u16(), *revoked)
            }
        })
        .buffer_unordered(48)
        .collect::<Vec<_>>()
        .await;
    for (status, revoked) in answers {
        assert_eq!(status, if revoked { 401 } else { 200 });
    }
}

#[tokio::test]
async fn revocations_leave_redis_when_their_token_expires() {
    let cluster = Cluster::start(2, &[("JWT_TTL_SECONDS", "1")]).await;
    let token = cluster[0].token().await;
    assert_eq!(cluster[1].logout(&token).await.status(), 200);
    let key = cluster.key("revoked", "");
    let mut redis = cluster.redis_connection().await;
    let held: usize = redis::cmd("ZCARD")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("ZCARD answers");
    assert_eq!(held, 1);
    eventually("the expired revocation leaves Redis", || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move {
            let held: usize = redis::cmd("ZCARD")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .ok()?;
            Some(held == 0).filter(|gone| *gone)
        }
    })
    .await;
}

#[tokio::test]
async fn events_have_global_ids_and_reach_the_clients_of_every_instance() {
    let cluster = Cluster::start(2, &[]).await;
    let mut on_a = notifications(&cluster[0], None).await;
    let mut on_b = notifications(&cluster[1], None).await;
    for n in 0..4 {
        cluster[n % 2].enqueued(&format!("t{n}"), 1).await;
    }
    let seen_a = on_a.numbered(4).await;
    let seen_b = on_b.numbered(4).await;
    assert_eq!(seen_a, seen_b, "same ids, same bytes, on both instances");
    let ids: Vec<u64> = seen_a.iter().map(|(id, _)| *id).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive ids: {ids:?}"
    );
    let tasks: Vec<String> = seen_a
        .iter()
        .map(|(_, data)| serde_json::from_str::<Value>(data).expect("JSON")["task"].to_string())
        .collect();
    assert_eq!(tasks, [r#""t0""#, r#""t1""#, r#""t2""#, r#""t3""#]);
}

#[tokio::test]
async fn a_client_resumes_on_another_instance_with_no_gap_and_no_duplicate() {
    let cluster = Cluster::start(2, &[]).await;
    let mut reference = notifications(&cluster[0], None).await;
    let mut leaving = notifications(&cluster[0], None).await;
    for n in 0..3 {
        cluster[0].enqueued(&format!("before{n}"), 1).await;
    }
    let before = leaving.numbered(3).await;
    drop(leaving);
    for n in 0..3 {
        cluster[n % 2].enqueued(&format!("between{n}"), 1).await;
    }
    let last_id = before.last().expect("an event").0.to_string();
    let mut resumed = notifications(&cluster[1], Some(&last_id)).await;
    cluster[1].enqueued("after", 1).await;
    let expected = reference.numbered(7).await;
    assert_eq!(&expected[..3], &before[..]);
    assert_eq!(
        resumed.numbered(4).await,
        expected[3..],
        "the replay from Redis meets the live events exactly"
    );
}

#[tokio::test]
async fn each_instance_holds_one_subscription_whatever_its_clients() {
    let cluster = Cluster::start(2, &[]).await;
    let mut streams = Vec::new();
    for n in 0..6 {
        streams.push(notifications(&cluster[n % 2], None).await);
    }
    let channel = format!("{}:events", cluster.prefix);
    let mut redis = cluster.redis_connection().await;
    let (_, subscribers): (String, usize) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query_async(&mut redis)
        .await
        .expect("PUBSUB answers");
    assert_eq!(subscribers, 2, "one per instance, not one per client");
}

#[tokio::test]
async fn one_instance_produces_the_notifications_and_another_takes_over_when_it_dies() {
    let interval = Duration::from_millis(200);
    let settings = [("NOTIFY_INTERVAL_MS", "200")];
    let mut cluster = Cluster::start(3, &settings).await;
    let mut stream = notifications(&cluster[2], None).await;
    // Ten intervals: one producer sends about ten; three would send about thirty.
    let counted = count_notifications(&mut stream, interval * 10).await;
    assert!(
        (6..=14).contains(&counted),
        "{counted} notifications in ten intervals"
    );

    // Kill the two other instances (the holder among them or not): the one left produces.
    for instance in cluster.instances.drain(..2) {
        instance.kill().await;
    }
    let resumed = tokio::time::timeout(Duration::from_secs(5), async {
        while count_notifications(&mut stream, interval * 2).await == 0 {}
    })
    .await;
    assert!(resumed.is_ok(), "notifications resume within a few seconds");
    let counted = count_notifications(&mut stream, interval * 10).await;
    assert!(
        (6..=14).contains(&counted),
        "{counted} notifications in ten intervals"
    );
}

/// Notifications (events without an `event` name) seen on `stream` during `window`.
async fn count_notifications(stream: &mut SseStream, window: Duration) -> usize {
    let deadline = Instant::now() + window;
    let mut count = 0;
    while let Ok(Some(event)) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        stream.next(),
    )
    .await
    {
        let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
        if data.get("event").is_none() && data.get("id").is_some() {
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn the_failed_login_budget_is_shared_by_the_instances() {
    let cluster = Cluster::start(2, &[("LOGIN_MAX_PER_MINUTE", "2")]).await;
    assert_eq!(cluster[0].login("admin", "guess").await.status(), 401);
    assert_eq!(cluster[1].login("admin", "guess").await.status(), 401);
    for instance in [0, 1] {
        let refused = cluster[instance].login("admin", "guess").await;
        assert_eq!(refused.status(), 429, "instance {instance}");
        assert!(refused.headers().contains_key("retry-after"));
    }
}

#[tokio::test]
async fn the_relay_fills_gaps_from_the_stream_and_announces_what_it_lost() {
    let cluster = Cluster::start(1, &[("SSE_REPLAY_BUFFER", "3")]).await;
    let mut stream = notifications(&cluster[0], None).await;
    cluster[0].enqueued("first", 1).await;
    let first = stream.numbered(1).await[0].0;
    // Events that reach the stream but not the channel (a message lost in a blip), then ids
    // taken but never retained (beyond the replay window), then one published normally.
    let mut redis = cluster.redis_connection().await;
    let ids = cluster.key("events", ":ids");
    let events = cluster.key("events", "");
    for _ in 0..3 {
        let _: u64 = redis::cmd("INCR")
            .arg(&ids)
            .query_async(&mut redis)
            .await
            .expect("INCR answers");
    }
    for _ in 0..2 {
        let id: u64 = redis::cmd("INCR")
            .arg(&ids)
            .query_async(&mut redis)
            .await
            .expect("INCR answers");
        let data = format!(
            r#"{{"id":{id},"type":"info","message":"only in the stream","timestamp":"2026-01-01T00:00:00Z"}}"#
        );
        let _: String = redis::cmd("XADD")
            .arg(&events)
            .arg("MAXLEN")
            .arg(3)
            .arg(format!("{id}-0"))
            .arg("d")
            .arg(data)
            .query_async(&mut redis)
            .await
            .expect("XADD answers");
    }
    cluster[0].enqueued("after the gap", 1).await;
    let lagged = stream.next_json().await;
    assert_eq!(lagged["event"], "stream.lagged", "{lagged}");
    assert_eq!(lagged["skipped"], 3, "{lagged}");
    let filled = stream.numbered(3).await;
    let ids: Vec<u64> = filled.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [first + 4, first + 5, first + 6]);
    assert!(filled[0].1.contains("only in the stream"));
    assert!(filled[2].1.contains("after the gap"));
}

#[tokio::test]
async fn a_redis_outage_answers_503_at_once_and_everything_recovers_by_itself() {
    let redis = RedisServer::start_with(Persistence::AppendOnly).await;
    let mut cluster = Cluster::start_on(redis, 2, &[]).await;
    // Opened first, so the login's event and the enqueue's are both live for it, in order.
    let mut stream = notifications(&cluster[1], None).await;
    let token = cluster[0].token().await;
    cluster[0].enqueued("before", 1).await;
    let before = stream.numbered(2).await;
    assert!(before[1].1.contains(r#""task":"before""#), "{before:?}");

    cluster.redis.kill();
    for (path, token) in [
        ("/queue/status", None),
        ("/dequeue", None),
        ("/protected", Some(&token)),
        ("/ready", None),
    ] {
        let started = Instant::now();
        let response = match token {
            Some(token) => cluster[0].with_token(Method::GET, path, token).await,
            None => cluster[0].get(path).await,
        };
        assert!(
            started.elapsed() < OUTAGE_GUARD,
            "{path} answered without hanging"
        );
        assert_eq!(response.status(), 503, "{path}");
        assert!(response.headers().contains_key("retry-after"), "{path}");
        assert_eq!(
            json_of(response).await["code"],
            "store_unavailable",
            "{path}"
        );
    }
    let refused = cluster[1].enqueue("during", 1).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        cluster[1].get("/health").await.status(),
        200,
        "liveness holds"
    );

    cluster.redis.restart().await;
    for instance in [0, 1] {
        eventually("the instance is ready again", || async {
            cluster[instance].get("/ready").await.status() == 200
        })
        .await;
    }
    cluster[0].enqueued("after", 1).await;
    let next = stream.numbered(1).await;
    assert!(
        next[0].1.contains(r#""task":"after""#),
        "the open stream resumed: {next:?}"
    );
    let status = cluster[1].queue_status().await;
    assert_eq!(
        status["size"], 2,
        "the task acknowledged before the outage is kept"
    );
    assert_eq!(cluster[1].protected(&token).await.status(), 200);
}

#[tokio::test]
async fn through_nginx_the_instances_behave_as_one_server() {
    let cluster = Cluster::start(
        2,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("NOTIFY_INTERVAL_MS", "200"),
        ],
    )
    .await;
    let nginx = Nginx::start(&cluster.addrs()).await;

    // Logout through the proxy, then every following request (round robin: both instances).
    let token = nginx.token().await;
    assert_eq!(nginx.logout(&token).await.status(), 200);
    for _ in 0..4 {
        assert_eq!(nginx.protected(&token).await.status(), 401);
    }

    // Several seconds of events through the proxy (20 notifications, one every 200 ms): every
    // one, in order, no gap.
    let mut stream = notifications(&nginx, None).await;
    let events = stream.numbered(20).await;
    let ids: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "no gap: {ids:?}");

    // A short load through the proxy, 16 clients at once: every answer a 200, from both
    // instances.
    const CLIENTS: usize = 16;
    const EACH: usize = 25;
    let statuses = concurrent_gets(&nginx, "/queue/status", CLIENTS, EACH).await;
    let refused: Vec<_> = statuses.iter().filter(|s| **s != Ok(200)).collect();
    assert!(refused.is_empty(), "{refused:?}\n{}", nginx.error_log());
    let mut served = Vec::new();
    for instance in &cluster.instances {
        served.push(instance.answered("/queue/status", 200).await);
    }
    assert!(served.iter().all(|n| *n > 0.0), "both served: {served:?}");
    assert_eq!(served.iter().sum::<f64>(), (CLIENTS * EACH) as f64);
}
