//! The JetStream backend with several relays: one queue and one memory of keys for all, any
//! admin call on any relay, 504 (never 200) without a quorum, and nothing acknowledged lost
//! when relays or servers are killed under load. Every relay and server here is a real
//! process; the cluster is three `nats-server`s on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use textus_relay::ingress::signature;
use textus_relay::support::sink::{Reply, Sink};

use crate::nats_server::NatsCluster;
use crate::support::*;

/// The `storage:` line of relays sharing `cluster` under `prefix`.
fn storage(cluster: &NatsCluster, replicas: usize, prefix: &str) -> String {
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "storage: {{ kind: nats, urls: [{}], replicas: {replicas}, prefix: {prefix}, publish_timeout: 3s }}",
        urls.join(", ")
    )
}

/// Every event to every one of `targets` (name, url).
fn routes_to(targets: &[(&str, String)]) -> String {
    let mut yaml = format!("source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n");
    for (name, url) in targets {
        yaml.push_str(&http_target(name, url, ""));
    }
    let names: Vec<&str> = targets.iter().map(|(n, _)| *n).collect();
    yaml.push_str(&format!(
        "routes:\n  - events: [\"*\"]\n    to: [{}]\n",
        names.join(", ")
    ));
    yaml
}

/// Posts `body` until the relay answers 200 (as TextUs retries a 504 while a leader is
/// elected) and returns that answer.
async fn post_until_200(relay: &TestRelay, body: &[u8], what: &str) -> Value {
    eventually(what, async || {
        let (status, answer) = relay.post_signed(body).await;
        if status == 200 {
            Ok(answer)
        } else {
            Err(format!("{status} {answer}"))
        }
    })
    .await
}

async fn relay_on(dir: &Path, storage: &str, rest: &str) -> TestRelay {
    std::fs::create_dir_all(dir).expect("relay folder");
    TestRelay::start_with_storage(dir, storage, rest).await
}

fn ids(got: &[textus_relay::support::sink::Received]) -> Vec<String> {
    got.iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).expect("JSON")["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn two_relays_share_one_queue_and_one_memory_of_keys() {
    let cluster = NatsCluster::single().await;
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, rest) = (
        storage(&cluster, 1, "share"),
        routes_to(&[("t", sink.url("/t"))]),
    );
    let one = relay_on(&dir.path().join("one"), &storage, &rest).await;
    let two = relay_on(&dir.path().join("two"), &storage, &rest).await;

    let body = fixture_with_id("message.received", "/deliveries/shared-1");
    let (status, answer) = one.post_signed(&body).await;
    assert_eq!((status, &answer["status"]), (200, &json!("accepted")));
    let (status, answer) = two.post_signed(&body).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("duplicate")),
        "a repeat sent to another relay is a duplicate"
    );
    for i in 0..20 {
        let relay = if i % 2 == 0 { &one } else { &two };
        let body = fixture_with_id(
            "message.delivered",
            &format!("/deliveries/shared-{}", i + 2),
        );
        assert_eq!(relay.post_signed(&body).await.0, 200);
    }
    let got = ids(&sink.wait_for(21, PATIENCE).await.expect("every event"));
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), 21, "{got:?}");
    for relay in [&one, &two] {
        wait_drained(relay, "t").await;
    }
    assert_eq!(sink.received().len(), 21, "nothing was delivered twice");
}

#[tokio::test]
async fn a_repeat_after_the_leader_changes_is_a_duplicate_and_not_delivered_again() {
    let mut cluster = NatsCluster::three().await;
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, rest) = (
        storage(&cluster, 3, "repeat"),
        routes_to(&[("t", sink.url("/t"))]),
    );
    let relay = relay_on(dir.path(), &storage, &rest).await;
    let body = fixture_with_id("message.received", "/deliveries/repeat-1");
    assert_eq!(relay.post_signed(&body).await.1["status"], "accepted");
    sink.wait_for(1, PATIENCE).await.expect("delivered");
    // Settled (its ack taken), so that the kill below cannot make it a redelivery.
    wait_drained(&relay, "t").await;
    // A leader restarted from its disk knows the message ids of the messages it still has:
    // the delivered one is gone from the work queue, so only the seen stream remembers it.
    let leader = cluster
        .stream_leader("repeat-deliveries")
        .await
        .expect("a leader");
    cluster.kill(leader);
    cluster.restart(leader).await;
    cluster.move_leader("repeat-deliveries", leader).await;
    let answer = post_until_200(&relay, &body, "the relay reconnected").await;
    assert_eq!(answer["status"], "duplicate", "{answer}");
    // A fresh event as a barrier: once it is delivered and nothing is pending, a stored
    // repeat would have been delivered too.
    let barrier = fixture_with_id("message.received", "/deliveries/repeat-2");
    let answer = post_until_200(&relay, &barrier, "the barrier stored").await;
    assert_eq!(answer["status"], "accepted", "{answer}");
    sink.wait_for(2, PATIENCE).await.expect("barrier delivered");
    wait_drained(&relay, "t").await;
    let got = ids(&sink.received());
    assert_eq!(
        got,
        ["/deliveries/repeat-1", "/deliveries/repeat-2"],
        "the repeat was not delivered again"
    );
}

#[tokio::test]
async fn a_pause_through_one_relay_holds_the_target_on_every_relay() {
    let cluster = NatsCluster::single().await;
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, rest) = (
        storage(&cluster, 1, "pause"),
        routes_to(&[("t", sink.url("/t"))]),
    );
    let one = relay_on(&dir.path().join("one"), &storage, &rest).await;
    let two = relay_on(&dir.path().join("two"), &storage, &rest).await;

    let (status, body) = one
        .admin_call(Method::POST, "/api/v1/targets/t/pause", None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the other relay sees the pause", async || {
        let t = target(&two, "t").await;
        if t["paused"] == true { Ok(()) } else { Err(t) }
    })
    .await;
    for i in 0..3 {
        let body = fixture_with_id("message.received", &format!("/deliveries/held-{i}"));
        assert_eq!(two.post_signed(&body).await.0, 200);
    }
    eventually("three deliveries held back", async || {
        let t = target(&two, "t").await;
        let held = t["queued"].as_u64().unwrap_or(0) + t["in_flight"].as_u64().unwrap_or(0);
        if held == 3 { Ok(()) } else { Err(t) }
    })
    .await;
    assert!(sink.received().is_empty(), "paused: nothing is sent");
    // The relay that paused it is not the one that enables it.
    let (status, body) = two
        .admin_call(Method::POST, "/api/v1/targets/t/enable", None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let got = ids(&sink.wait_for(3, PATIENCE).await.expect("sent once enabled"));
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 3, "{got:?}");
    eventually("the first relay sees the enable", async || {
        let t = target(&one, "t").await;
        if t["paused"] == false { Ok(()) } else { Err(t) }
    })
    .await;
}

#[tokio::test]
async fn a_dead_letter_made_by_one_relay_is_listed_shown_and_replayed_through_another() {
    let cluster = NatsCluster::single().await;
    let sink = Sink::start(
        vec![Reply::StatusWithBody(400, "invalid_payload".into())],
        Reply::Status(200),
    )
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, rest) = (
        storage(&cluster, 1, "dead"),
        routes_to(&[("t", sink.url("/t"))]),
    );
    let one = relay_on(&dir.path().join("one"), &storage, &rest).await;
    let body = fixture_with_id("contact.opted_out", "/deliveries/dead-1");
    assert_eq!(one.post_signed(&body).await.0, 200);
    let letters = one.wait_dead_letters(1).await;
    let id = letters[0]["id"].clone();
    // A second relay, started after the letter died, serves every call about it.
    let two = relay_on(&dir.path().join("two"), &storage, &rest).await;
    let listed = two.dead_letters().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["event_id"], "/deliveries/dead-1");
    let (status, shown) = two.admin_get(&format!("/api/v1/dead-letters/{id}")).await;
    assert_eq!(status, 200, "{shown}");
    assert!(shown.to_string().contains("invalid_payload"), "{shown}");
    drop(one);
    let (status, replayed) = two
        .admin_call(
            Method::POST,
            "/api/v1/dead-letters/replay",
            None,
            Some(json!({ "ids": [id] })),
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    let got = sink
        .wait_for(2, PATIENCE)
        .await
        .expect("delivered on replay");
    assert_eq!(got[1].body[..], body[..]);
    assert!(two.dead_letters().await.is_empty());
}

#[tokio::test]
async fn without_the_servers_ingest_is_504_never_200_and_the_retry_is_delivered() {
    let mut cluster = NatsCluster::single().await;
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_on(
        dir.path(),
        &storage(&cluster, 1, "down"),
        &routes_to(&[("t", sink.url("/t"))]),
    )
    .await;
    cluster.kill(0);
    let body = fixture_with_id("message.received", "/deliveries/down-1");
    let (status, answer) = relay.post_signed(&body).await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["error"], "store_unavailable", "{answer}");
    cluster.restart(0).await;
    // TextUs retries the 504: stored now (or already, if the first publish reached the
    // server as it came back), and delivered once.
    let answer = eventually("the retry is stored", async || {
        let (status, answer) = relay.post_signed(&body).await;
        if status == 200 {
            Ok(answer)
        } else {
            Err(format!("{status} {answer}"))
        }
    })
    .await;
    assert!(
        answer["status"] == "accepted" || answer["status"] == "duplicate",
        "{answer}"
    );
    let got = ids(&sink.wait_for(1, PATIENCE).await.expect("delivered"));
    assert_eq!(got, ["/deliveries/down-1"]);
}

/// A sender that behaves like TextUs: an event is acknowledged by a 200; anything else (504,
/// a refused connection) is retried, here at the other relay, until one answers 200.
async fn send_until_acknowledged(client: &reqwest::Client, relays: &[SocketAddr], body: &[u8]) {
    let signature = signature::sign(SECRET, body);
    // A closure owning everything it uses and returning an owned future, not an async
    // closure over borrows: this runs in a spawned task, and rustc cannot yet prove such a
    // borrowing future Send for every lifetime.
    let (client, relays, body) = (client.clone(), relays.to_vec(), body.to_vec());
    let mut attempt = 0usize;
    let probe = move || {
        let relay = relays[attempt % relays.len()];
        attempt += 1;
        let request = client
            .post(format!("http://{relay}/webhooks/textus"))
            .header("X-TextUs-Signature", &signature)
            .body(body.clone());
        async move {
            match request.send().await {
                Ok(a) if a.status() == 200 => Ok(()),
                Ok(a) => Err(format!("{relay} answered {}", a.status())),
                Err(e) => Err(format!("{relay}: {e}")),
            }
        }
    };
    eventually_within(PATIENCE * 4, "a relay to acknowledge an event", probe).await;
}

#[tokio::test]
async fn killing_relays_and_servers_under_load_loses_no_acknowledged_event() {
    let mut cluster = NatsCluster::three().await;
    let a = Sink::start(vec![], Reply::Status(200))
        .await
        .expect("sink a");
    let b = Sink::start(vec![], Reply::Status(200))
        .await
        .expect("sink b");
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, rest) = (
        storage(&cluster, 3, "load"),
        routes_to(&[("a", a.url("/a")), ("b", b.url("/b"))]),
    );
    let mut one = relay_on(&dir.path().join("one"), &storage, &rest).await;
    let mut two = relay_on(&dir.path().join("two"), &storage, &rest).await;
    let relays = [one.listen, two.listen];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    const EVENTS: usize = 400;
    const SENDERS: usize = 4;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (client, done) = (client.clone(), done_tx.clone());
        senders.push(tokio::spawn(async move {
            for i in (s..EVENTS).step_by(SENDERS) {
                let id = format!("/deliveries/load-{i}");
                let body = fixture_with_id("message.received", &id);
                let order = if i % 2 == 0 {
                    relays
                } else {
                    [relays[1], relays[0]]
                };
                send_until_acknowledged(&client, &order, &body).await;
                let _ = done.send(id);
                // Paces the senders so the kills fall amid traffic; not a wait for anything.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    drop(done_tx);
    let mut acknowledged = BTreeSet::new();
    let mut wait_for_acks = async |n: usize, acknowledged: &mut BTreeSet<String>| {
        while acknowledged.len() < n {
            match done_rx.recv().await {
                Some(id) => {
                    acknowledged.insert(id);
                }
                None => break,
            }
        }
    };

    // A relay killed mid-load, then back: what it had leased goes to the other after the
    // lease (15 s) runs out.
    wait_for_acks(EVENTS / 8, &mut acknowledged).await;
    one.kill9();
    wait_for_acks(EVENTS / 4, &mut acknowledged).await;
    one.restart().await;
    // The deliveries stream's leader, killed: the cluster elects another, and ingest waits
    // (504s, retried by the sender) through the election.
    let leader = cluster
        .stream_leader("load-deliveries")
        .await
        .expect("the deliveries stream has a leader");
    cluster.kill(leader);
    wait_for_acks(EVENTS / 2, &mut acknowledged).await;
    cluster.restart(leader).await;
    // Both at once: a relay and a server (the current leader of the same stream).
    wait_for_acks(EVENTS * 5 / 8, &mut acknowledged).await;
    let leader = cluster
        .stream_leader("load-deliveries")
        .await
        .expect("a leader again");
    two.kill9();
    cluster.kill(leader);
    wait_for_acks(EVENTS * 3 / 4, &mut acknowledged).await;
    two.restart().await;
    cluster.restart(leader).await;
    wait_for_acks(EVENTS, &mut acknowledged).await;
    for s in senders {
        s.await.expect("sender");
    }
    assert_eq!(
        acknowledged.len(),
        EVENTS,
        "every event was acknowledged in the end"
    );

    for (name, sink) in [("a", &a), ("b", &b)] {
        let got = eventually(
            &format!("every acknowledged event reaches {name}"),
            async || {
                let got: BTreeSet<String> = ids(&sink.received()).into_iter().collect();
                let missing: Vec<&String> = acknowledged.difference(&got).collect();
                if missing.is_empty() {
                    Ok(got)
                } else {
                    Err(format!(
                        "{} missing, e.g. {:?}",
                        missing.len(),
                        &missing[..missing.len().min(5)]
                    ))
                }
            },
        )
        .await;
        let mut times: BTreeMap<String, usize> = BTreeMap::new();
        for id in ids(&sink.received()) {
            *times.entry(id).or_default() += 1;
        }
        let twice = times.values().filter(|n| **n > 1).count();
        println!(
            "target {name}: {} distinct events, {twice} delivered more than once (at-least-once, after a kill)",
            got.len()
        );
    }
    // After all that, a repeat to the other relay is still a duplicate.
    let body = fixture_with_id("message.received", "/deliveries/load-0");
    let (status, answer) = two.post_signed(&body).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("duplicate")),
        "{answer}"
    );
}

#[tokio::test]
async fn two_relays_split_a_rate_limit_between_them() {
    let cluster = NatsCluster::single().await;
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let rest = format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", &sink.url("/t"), "    rate_limit: 4/s\n")
    );
    let storage = storage(&cluster, 1, "rate");
    let one = relay_on(&dir.path().join("one"), &storage, &rest).await;
    let two = relay_on(&dir.path().join("two"), &storage, &rest).await;
    for relay in [&one, &two] {
        eventually("each relay counts two relays", async || {
            let (_, ready) = relay.admin_get("/readyz").await;
            if ready["relays"] == 2 {
                Ok(())
            } else {
                Err(ready)
            }
        })
        .await;
    }
    const EVENTS: usize = 12;
    for i in 0..EVENTS {
        let relay = if i % 2 == 0 { &one } else { &two };
        let body = fixture_with_id("message.received", &format!("/deliveries/rate-{i}"));
        assert_eq!(relay.post_signed(&body).await.0, 200);
    }
    let got = sink.wait_for(EVENTS, PATIENCE).await.expect("every event");
    // 4/s shared: each relay sends 2/s, starting with one token. Twelve deliveries take
    // (12 - 2) / 4 s = 2.5 s; had each relay applied the whole 4/s, about half of that.
    let span = got[EVENTS - 1].at.duration_since(got[0].at);
    assert!(
        span >= Duration::from_secs(2),
        "twelve deliveries at 4/s over two relays took only {span:?}"
    );
}
