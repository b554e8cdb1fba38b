//! `s3://` with credentials from the environment, signed, against the test server on 127.0.0.1.
//! Alone in its test binary because it sets process environment variables.

mod support;

use pixelquery::source;
use support::server::{Behaviour, Server};

#[test]
fn s3_requests_are_signed_with_environment_credentials() {
    let server = Server::start(vec![7u8; 5000], Behaviour::default());
    // Only this test runs in this binary, so nothing reads the environment concurrently.
    std::env::set_var("AWS_ENDPOINT_URL", server.base());
    std::env::set_var("AWS_REGION", "eu-west-3");
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
    std::env::set_var(
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );
    std::env::set_var("AWS_SESSION_TOKEN", "session-token");
    std::env::remove_var("AWS_NO_SIGN_REQUEST");

    let src = source::open("s3://bucket/key.tif").unwrap();
    assert_eq!(src.size(), 5000);
    assert_eq!(&src.read_at(4990, 10).unwrap()[..], &[7u8; 10]);
    let request = &server.log()[0];
    assert_eq!(request.path, "/bucket/key.tif");
    let auth = request.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && auth.contains("/eu-west-3/s3/aws4_request,")
            && auth.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
            ),
        "{auth}"
    );
    assert_eq!(
        request.header("x-amz-security-token"),
        Some("session-token")
    );
    assert!(request
        .header("x-amz-date")
        .is_some_and(|d| d.len() == 16 && d.ends_with('Z')));

    // AWS_NO_SIGN_REQUEST turns signing off even with credentials present.
    std::env::set_var("AWS_NO_SIGN_REQUEST", "YES");
    source::open("s3://bucket/key.tif").unwrap();
    assert!(server
        .log()
        .last()
        .unwrap()
        .header("authorization")
        .is_none());
}
