//! The traffic log over real HTTP: every request is recorded verbatim until
//! recording is turned off, and again once it is back on; the stand-in
//! answers the same either way.

use tally_sandbox::Sandbox;

#[tokio::test]
async fn recording_can_be_turned_off_and_on_without_changing_answers() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve("127.0.0.1:0").await.unwrap();
    let http = reqwest::Client::new();
    let post = |body: &'static str| {
        let req = http.post(server.url("/webhook/orders")).body(body).header("content-type", "application/json");
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let first = post(r#"{"n":1}"#).await;
    sandbox.traffic.set_recording(false);
    let second = post(r#"{"n":2}"#).await;
    sandbox.traffic.set_recording(true);
    let third = post(r#"{"n":3}"#).await;
    assert_eq!((first, second), (third, third), "the answer does not depend on recording");
    let bodies: Vec<String> = sandbox.traffic.under("/webhook").into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":3}"#]);
}
