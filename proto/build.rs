//! Compiles the `.proto` files with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/prometheus/remote.proto", "proto/prometheus/write_v2.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;

    // gRPC services: messages by prost, clients and servers by tonic.
    let services = ["proto/aion/ingester.proto"];
    for f in services {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(services, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
