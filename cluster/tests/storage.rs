//! openraft's storage conformance suite over the redb log store and the snapshot-file
//! state-machine store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn redb_log_and_state_machine_pass_openraft_suite() {
    starling_cluster::testing::run_storage_suite().unwrap();
}
