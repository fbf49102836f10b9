//! `embed_migrations!` reads the migration folders at compile time; this
//! makes cargo rebuild the crate when a migration is added or changed.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
