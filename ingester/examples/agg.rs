use aion_proto::ingester as pb;
use aion_proto::ingester::pushdown_client::PushdownClient;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes: Vec<usize> = args[1].split(',').map(|s| s.parse().unwrap()).collect();
    let leaders: Vec<Vec<u64>> = args[2].split('/').map(|g| g.split(',').map(|s| s.parse().unwrap()).collect()).collect();
    let end: i64 = 1796308560000;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut cs = Vec::new();
        for p in [19100, 19101, 19102] {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{p}")).unwrap().connect().await.unwrap();
            cs.push(PushdownClient::new(ch).max_decoding_message_size(256 << 20));
        }
        let e = "sum by (region) (avg_over_time(bench_memory_bytes[10m])) + count by (region) (avg_over_time(bench_memory_bytes[10m]))";
        let mut ts = Vec::new();
        for _ in 0..300 {
            let t = Instant::now();
            let futs = nodes.iter().map(|&n| {
                let mut c = cs[n].clone();
                let req = pb::AggregateRequest {
                    tenant: "anonymous".into(), expr: e.into(), start_ms: end - 86_340_000, end_ms: end, step_ms: 60_000,
                    lookback_ms: 300_000, shards: leaders[n].clone(), step_arrays: true, max_samples: 50_000_000, ..Default::default()
                };
                async move { c.aggregate(req).await.unwrap().into_inner().answered.len() }
            });
            let r = futures::future::join_all(futs).await;
            assert!(r.iter().all(|&n| n > 0));
            ts.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("nodes {nodes:?}: median {:.3} ms p10 {:.3}", ts[ts.len() / 2], ts[ts.len() / 10]);
    });
}
