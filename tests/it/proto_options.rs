//! The protos' language options, pinned: generated code imports them, so a
//! change moves every client's code (buf's breaking check leaves
//! go_package to this test: buf.yaml says why).

/// The one `go_package` of every latchkey proto.
const GO_PACKAGE: &str = "option go_package = \"latchkey.dev/api/latchkey/v1;latchkeyv1\";";

#[test]
fn every_latchkey_proto_has_the_pinned_go_package() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/latchkey/v1");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "proto") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let options: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("option go_package"))
            .collect();
        assert_eq!(options, [GO_PACKAGE], "{}", path.display());
    }
    assert!(files >= 6, "the protos were found ({files})");
}
