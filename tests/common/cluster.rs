//! Several instances of the real binary sharing one real Redis under one `REDIS_PREFIX`: what a
//! deployment behind a load balancer runs. Index a [`Cluster`] to talk to one instance
//! (`cluster[1].enqueue(..)`); put [`Nginx`](super::nginx::Nginx) in front of
//! [`Cluster::addrs`] to talk to all of them as one server.

use std::net::SocketAddr;
use std::ops::Index;

use super::process::ServerProcess;
use super::redis::{RedisServer, unique_prefix};

/// The signing key every instance of a cluster shares, so a token from one verifies on all.
pub const SECRET: &str = "cluster-test-secret-cluster-test-secret";

/// Redis plus instances sharing it under one prefix.
pub struct Cluster {
    /// The shared Redis; kill and restart it to make an outage.
    pub redis: RedisServer,
    /// The `REDIS_PREFIX` of every instance: the start of each key they keep.
    pub prefix: String,
    /// The running instances, in the order they were started.
    pub instances: Vec<ServerProcess>,
}

impl Cluster {
    /// `size` instances on a Redis of their own that keeps nothing on disk, each with the
    /// cluster's settings plus `settings`.
    pub async fn start(size: usize, settings: &[(&str, &str)]) -> Self {
        Self::start_on(RedisServer::start().await, size, settings).await
    }

    /// `size` instances on `redis`, each with the cluster's settings plus `settings`.
    pub async fn start_on(redis: RedisServer, size: usize, settings: &[(&str, &str)]) -> Self {
        let mut cluster = Self {
            redis,
            prefix: unique_prefix("cluster"),
            instances: Vec::new(),
        };
        for _ in 0..size {
            cluster.add(settings).await;
        }
        cluster
    }

    /// Starts one more instance with the cluster's settings plus `settings`. Periodic
    /// notifications are off (one a minute) unless `settings` set `NOTIFY_INTERVAL_MS`.
    pub async fn add(&mut self, settings: &[(&str, &str)]) {
        let url = self.redis.url();
        let mut envs = vec![
            ("STORE", "redis"),
            ("REDIS_URL", url.as_str()),
            ("REDIS_PREFIX", self.prefix.as_str()),
            ("JWT_SECRET", SECRET),
            ("RUST_LOG", "backflow=warn,backflow::server=info"),
            ("NOTIFY_INTERVAL_MS", "60000"),
        ];
        envs.extend_from_slice(settings);
        self.instances.push(ServerProcess::start(&envs).await);
    }

    /// Where each instance listens: the upstreams of a load balancer in front.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.instances
            .iter()
            .map(|instance| instance.addr)
            .collect()
    }

    /// The key `{<prefix>:<structure>}<rest>` of one structure the instances keep in Redis.
    pub fn key(&self, structure: &str, rest: &str) -> String {
        format!("{{{}:{structure}}}{rest}", self.prefix)
    }

    /// A direct connection to the cluster's Redis, to look at (or tamper with) what the
    /// instances keep there.
    pub async fn redis_connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .expect("a Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis answers")
    }
}

impl Index<usize> for Cluster {
    type Output = ServerProcess;

    fn index(&self, instance: usize) -> &ServerProcess {
        &self.instances[instance]
    }
}
