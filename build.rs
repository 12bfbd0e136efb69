//! Compiles `proto/` with protox (no system protoc needed) into tonic server
//! and client code, and saves the descriptor set for gRPC reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(["tcplab/v1/lab.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("tcplab_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    // Malformed request bytes are INVALID_ARGUMENT, not tonic's INTERNAL (src/api/grpc/codec.rs).
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::api::grpc::codec::StrictProstCodec")
        .compile_fds(fds)?;
    Ok(())
}
