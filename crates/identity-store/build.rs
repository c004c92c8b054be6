// The migrations are embedded from outside this crate; rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
