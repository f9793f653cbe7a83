//! Argon2id password hashing (OWASP parameters: 19 MiB, 2 passes, 1 lane). Hashing is
//! CPU-bound, so it runs on the blocking pool, never on the async workers.
//!
//! At most one hash per CPU runs at a time, in memory reused from hash to hash. Allocating
//! 19 MiB per hash on whichever blocking thread ran it made the allocator keep every
//! thread's arena grown: a login burst left the server at 1.4 GiB resident. Running more
//! hashes than CPUs at once only slows all of them down together.

use std::sync::{LazyLock, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters")
}

static PERMITS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())));

/// Memory of finished hashes, one set per permit at most.
static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs argon2 into `out` with pooled memory (grown when stored parameters ask for more).
fn compute(
    a: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    let pool = || MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let mut blocks = pool().pop().unwrap_or_default();
    if blocks.len() < params.block_count() {
        blocks.resize(params.block_count(), Block::default());
    }
    let result = a.hash_password_into_with_memory(password, salt, out, &mut blocks[..]);
    pool().push(blocks);
    result
}

/// Runs `f` on the blocking pool once a hashing permit is free.
async fn limited<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let _permit = PERMITS.acquire().await?;
    Ok(tokio::task::spawn_blocking(f).await?)
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    limited(move || {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes)?;
        let params = params();
        let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let hash = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
            compute(&a, &params, password.as_bytes(), salt_bytes, out).map_err(Into::into)
        })?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt.as_salt()),
            hash: Some(hash),
        };
        anyhow::Ok(phc.to_string())
    })
    .await?
    .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

/// Constant-time verification (`Output` compares in constant time), with the algorithm,
/// version and parameters the stored hash names. An unparsable stored hash counts as a
/// mismatch rather than an error.
pub async fn verify(password: String, stored: String) -> anyhow::Result<bool> {
    limited(move || {
        let check = || -> Option<bool> {
            let h = PasswordHash::new(&stored).ok()?;
            let (salt, expected) = (h.salt?, h.hash?);
            let algorithm = Algorithm::try_from(h.algorithm).ok()?;
            let version = match h.version {
                Some(v) => Version::try_from(v).ok()?,
                None => Version::default(),
            };
            let params = Params::try_from(&h).ok()?;
            let mut salt_bytes = [0u8; 64];
            let salt_bytes = salt.decode_b64(&mut salt_bytes).ok()?;
            let a = Argon2::new(algorithm, version, params.clone());
            let computed = Output::init_with(expected.len(), |out| {
                compute(&a, &params, password.as_bytes(), salt_bytes, out).map_err(Into::into)
            })
            .ok()?;
            Some(computed == expected)
        };
        check().unwrap_or(false)
    })
    .await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = super::hash("Secret-pass1".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(super::verify("Secret-pass1".into(), h.clone())
            .await
            .unwrap());
        assert!(!super::verify("secret-pass1".into(), h).await.unwrap());
        assert!(!super::verify("x".into(), "not a hash".into())
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn hashes_of_the_argon2_crate_still_verify() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let h = argon2::Argon2::default()
            .hash_password(b"Other-pass2", &salt)
            .unwrap()
            .to_string();
        assert!(super::verify("Other-pass2".into(), h.clone())
            .await
            .unwrap());
        assert!(!super::verify("other-pass2".into(), h).await.unwrap());
    }
}
