// `sqlx::migrate!` embeds the migrations at compile time but, on stable Rust, only notices
// changes to files it already embedded: rebuild whenever the directory changes, so a new
// migration can never be silently left out of the binary.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
