//! `starling passwd`-style helper: reads a password from stdin (one line,
//! trailing newline removed) and prints its argon2id PHC hash for the
//! `password` field of a policy `[[identity]]`.
//!
//! `printf 'secret' | cargo run -p starling-auth --example passwd`

use std::io::Read;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut pw = Vec::new();
    std::io::stdin().read_to_end(&mut pw)?;
    if pw.ends_with(b"\n") {
        pw.pop();
    }
    println!("{}", starling_auth::hash_password(&pw)?);
    Ok(())
}
