//! Caps the browser module's memory at 2 GiB (its `memory` section's maximum):
//! a tracker never comes near it, and the allocator's address arithmetic
//! (`crate::allocator`) then never reaches the end of a 32-bit address space.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-cdylib-link-arg=--max-memory=2147483648");
    }
}
