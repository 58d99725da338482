//! The C header is real C: it compiles, and its constants agree with the runtime's.

use std::process::Command;

fn header_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../abi/tinyrustlm.h")
}

#[test]
fn header_compiles_as_c_and_cpp() {
    let dir = std::env::temp_dir().join(format!("trl-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("use_header.c");
    // Take the address of every function so a typo in a prototype is a compile error.
    std::fs::write(
        &src,
        format!(
            "#include <stdlib.h>\n#include \"{}\"\n_Static_assert(TRL_ABI_VERSION == 1u, \"abi\");\n\
             void *fns[] = {{ (void*)abi_version, (void*)alloc, (void*)dealloc, (void*)load_model, (void*)unload_model,\n\
               (void*)set_sampling, (void*)add_stop_string, (void*)clear_stop_strings, (void*)tokenize,\n\
               (void*)generate_start, (void*)generate_step, (void*)generate, (void*)reset,\n\
               (void*)read_result, (void*)read_diagnostics, (void*)last_error }};\n",
            header_path().display()
        ),
    )
    .unwrap();
    for (compiler, args) in [("cc", vec!["-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"]), ("c++", vec!["-x", "c++", "-std=c++17", "-Wall", "-Werror", "-fsyntax-only"])] {
        let mut cmd = Command::new(compiler);
        cmd.args(&args).arg(if compiler == "cc" { src.clone() } else { header_path() });
        let out = cmd.output().unwrap_or_else(|e| panic!("running {compiler}: {e}"));
        assert!(out.status.success(), "{compiler} rejected the header:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn header_status_codes_match_the_runtime() {
    use tinyrustlm::error::Status;
    let header = std::fs::read_to_string(header_path()).unwrap();
    let all = [
        Status::Ok, Status::OutOfBounds, Status::InvalidArgument, Status::WrongState, Status::OutOfMemory, Status::ContextFull,
        Status::InvalidSampling, Status::BufferTooSmall, Status::Truncated, Status::BadMagic, Status::UnsupportedVersion,
        Status::BadHeaderLength, Status::BadFlags, Status::BadHyperparameter, Status::BadSectionBounds, Status::BadAlignment,
        Status::BadPadding, Status::BadTensorName, Status::UnsupportedDtype, Status::BadTensorShape, Status::MissingTensor,
        Status::DuplicateTensor, Status::UnknownTensor, Status::BadTensorData, Status::BadQuantMode, Status::BadParameterCount,
        Status::TokenizerChecksum, Status::TensorLayoutChecksum, Status::ArtifactChecksum, Status::LimitExceeded,
        Status::BadTokenizerKind, Status::BadToken, Status::BadMerge, Status::BadSpecialToken,
    ];
    for s in all {
        let define = format!("#define TRL_STATUS_{}", s.name());
        let line = header.lines().find(|l| l.starts_with(&define) && l[define.len()..].starts_with(' ')).unwrap_or_else(|| panic!("header lacks {define}"));
        let value: u32 = line[define.len()..].split_whitespace().next().unwrap().trim_end_matches('u').parse().unwrap();
        assert_eq!(value, s.code(), "{define}");
    }
}
