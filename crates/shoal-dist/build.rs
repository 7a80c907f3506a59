//! Compiles `proto/shoal_ps.proto`, `proto/shoal_replay.proto`, `proto/shoal_rendezvous.proto`,
//! `proto/shoal_pipeline.proto` and `proto/shoal_jobs.proto` with protox (a protobuf compiler
//! written in Rust), so a build needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let protos = ["shoal_ps", "shoal_replay", "shoal_rendezvous", "shoal_pipeline", "shoal_jobs"]
        .map(|name| format!("{proto_dir}/{name}.proto"));
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(&protos, [proto_dir])?;
    // Tensor bytes as `bytes::Bytes`: decoding slices the received buffer instead of copying.
    tonic_prost_build::configure()
        .bytes(".shoal.ps.v1.Chunk.data")
        .bytes(".shoal.pipeline.v1.StageTensor.data")
        .compile_fds(descriptors)?;
    Ok(())
}
