//! Tells the integration tests which servers this build can test against.
//! Without `ONEPRESS_TEST_DATABASE_URL` / `ONEPRESS_TEST_MQTT_URL` (and
//! outside CI) the PostgreSQL + Mosquitto variants are compiled as
//! `#[ignore]`d with the reason, so `cargo test`'s summary counts and names
//! them instead of passing them silently. In CI nothing is ignored: a
//! missing server fails the run.

use std::env;

fn main() {
    for var in ["ONEPRESS_TEST_DATABASE_URL", "ONEPRESS_TEST_MQTT_URL", "CI"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(onepress_no_test_postgres)");
    println!("cargo::rustc-check-cfg=cfg(onepress_no_test_mosquitto)");
    let set = |var: &str| env::var(var).is_ok_and(|v| !v.trim().is_empty());
    if set("CI") {
        return;
    }
    if !set("ONEPRESS_TEST_DATABASE_URL") {
        println!("cargo::rustc-cfg=onepress_no_test_postgres");
    }
    if !set("ONEPRESS_TEST_MQTT_URL") {
        println!("cargo::rustc-cfg=onepress_no_test_mosquitto");
    }
}
