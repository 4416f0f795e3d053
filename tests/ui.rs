//! Compile-time behaviour of the macros: what compiles (`pass/`, also run) and the exact
//! error for each misuse (`fail/`, with `.stderr` snapshots).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/*/pass/*.rs");
    cases.compile_fail("tests/ui/*/fail/*.rs");
}
