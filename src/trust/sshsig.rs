//! SSH signatures of vetting entries, in the format of `ssh-keygen -Y sign`
//! (PROTOCOL.sshsig: an armored `-----BEGIN SSH SIGNATURE-----` block, namespace
//! `tend`, SHA-512 message hash as ssh-keygen uses), so that either side can make what
//! the other checks: a signature made by `ssh-keygen -Y sign -n tend` verifies here,
//! and one made here verifies with `ssh-keygen -Y verify -n tend`.
//!
//! Keys: Ed25519, ECDSA (P-256/384/521) and RSA private keys in OpenSSH format; an
//! encrypted one is decrypted with `$TEND_SSH_PASSPHRASE`. Keys held by an agent or a
//! security key sign through `ssh-keygen` itself (`tend vet --print-message`).

use std::path::Path;

use chrono::{DateTime, Utc};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use super::allowed_signers::{AllowedSigners, Refusal};

/// The signature namespace (`ssh-keygen -Y sign -n tend`).
pub const NAMESPACE: &str = "tend";

/// Who signed, once the signature verified and allowed_signers accepted the key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signer {
    /// The principals of the allowed_signers line that accepted the key.
    pub principal: String,
    /// `ED25519 SHA256:…`, as ssh-keygen prints it.
    pub key: String,
    /// `FILE:LINE` of that allowed_signers line.
    pub line: String,
}

/// `ED25519 SHA256:…` for a public key.
pub fn describe_key(key: &ssh_key::public::KeyData) -> String {
    use ssh_key::Algorithm::*;
    let kind = match key.algorithm() {
        Ed25519 => "ED25519".to_string(),
        Rsa { .. } => "RSA".to_string(),
        Ecdsa { .. } => "ECDSA".to_string(),
        SkEd25519 => "ED25519-SK".to_string(),
        SkEcdsaSha2NistP256 => "ECDSA-SK".to_string(),
        other => other.as_str().to_uppercase(),
    };
    format!("{kind} {}", key.fingerprint(HashAlg::Sha256))
}

/// Sign `message` with the private key at `key_path`; returns the armored signature.
pub fn sign(key_path: &Path, message: &[u8]) -> Result<String, String> {
    let shown = key_path.display();
    let text = std::fs::read_to_string(key_path).map_err(|e| {
        format!(
            "cannot read signing key {shown}: {}",
            crate::error::describe_io(&e)
        )
    })?;
    if text.contains("BEGIN SSH SIGNATURE") || PublicKey::from_openssh(text.trim()).is_ok() {
        return Err(format!(
            "{shown} is a public key or a signature; --sign-key wants the private key (without .pub)"
        ));
    }
    let mut key = PrivateKey::from_openssh(&text).map_err(|e| {
        format!(
            "{shown} is not an OpenSSH private key ({e}); convert an old PEM key with \
             `ssh-keygen -p -f {shown}`, or sign with ssh-keygen (see `tend vet --print-message`)"
        )
    })?;
    if key.is_encrypted() {
        let pass = std::env::var("TEND_SSH_PASSPHRASE").map_err(|_| {
            format!(
                "{shown} is encrypted: set $TEND_SSH_PASSPHRASE, or sign with ssh-keygen, which \
                 asks for it or uses your agent (see `tend vet --print-message`)"
            )
        })?;
        key = key.decrypt(pass.as_bytes()).map_err(|_| {
            format!("cannot decrypt {shown} with $TEND_SSH_PASSPHRASE: wrong passphrase?")
        })?;
    }
    let sig = match key.key_data().rsa() {
        Some(rsa) => sign_rsa(key.public_key(), rsa, message),
        None => key.sign(NAMESPACE, HashAlg::Sha512, message),
    }
    .map_err(|e| {
            format!(
                "cannot sign with {shown} ({e}); sign with ssh-keygen instead (see `tend vet --print-message`)"
            )
        })?;
    sig.to_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the signature: {e}"))
}

/// RSA signing, done here because ssh-key 0.6 builds the private key from the wrong
/// primes (`[p, p]`) and fails: rsa-sha2-512 over the SSHSIG signed data, as
/// ssh-keygen does.
fn sign_rsa(
    public: &PublicKey,
    keypair: &ssh_key::private::RsaKeypair,
    message: &[u8],
) -> ssh_key::Result<SshSig> {
    use rsa::signature::{SignatureEncoding, Signer};
    let big = |m: &ssh_key::Mpint| {
        m.as_positive_bytes()
            .map(rsa::BigUint::from_bytes_be)
            .ok_or(ssh_key::Error::Crypto)
    };
    let private = rsa::RsaPrivateKey::from_components(
        big(&keypair.public.n)?,
        big(&keypair.public.e)?,
        big(&keypair.private.d)?,
        vec![big(&keypair.private.p)?, big(&keypair.private.q)?],
    )
    .map_err(|_| ssh_key::Error::Crypto)?;
    let data = SshSig::signed_data(NAMESPACE, HashAlg::Sha512, message)?;
    let signed = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(private)
        .try_sign(&data)
        .map_err(|_| ssh_key::Error::Crypto)?;
    let signature = ssh_key::Signature::new(
        ssh_key::Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        signed.to_vec(),
    )?;
    SshSig::new(
        public.key_data().clone(),
        NAMESPACE,
        HashAlg::Sha512,
        signature,
    )
}

/// The key an armored signature claims to be made with (not yet verified).
pub fn claimed_key(armored: &str) -> Result<String, String> {
    let sig = parse(armored)?;
    Ok(describe_key(sig.public_key()))
}

fn parse(armored: &str) -> Result<SshSig, String> {
    let text = armored.trim();
    // ssh-keygen writes LF; accept a file that went through a CRLF editor too.
    let text = text.replace("\r\n", "\n");
    SshSig::from_pem(format!("{text}\n"))
        .map_err(|e| format!("not an SSH signature (-----BEGIN SSH SIGNATURE-----): {e}"))
}

/// Check `armored` over `message`: it must be an SSHSIG in namespace `tend` whose
/// signature verifies, made by a key that `allowed` accepts for `tend` at time `at`
/// (the vetting time, as git checks a commit's signature at its commit time).
pub fn verify(
    armored: &str,
    message: &[u8],
    allowed: &AllowedSigners,
    at: DateTime<Utc>,
) -> Result<Signer, String> {
    let sig = parse(armored)?;
    if sig.namespace() != NAMESPACE {
        return Err(format!(
            "the signature is for namespace \"{}\", not \"{NAMESPACE}\" (sign with `ssh-keygen -Y sign -n {NAMESPACE}`)",
            sig.namespace()
        ));
    }
    let key_desc = describe_key(sig.public_key());
    PublicKey::new(sig.public_key().clone(), "")
        .verify(NAMESPACE, message, &sig)
        .map_err(|_| {
            format!(
                "the signature ({key_desc}) does not match this vetting entry: it was made over \
                 other content (another recipe, hash, name, time or note)"
            )
        })?;
    match allowed.accept(sig.public_key(), NAMESPACE, at) {
        Ok(line) => Ok(Signer {
            principal: line.principals.clone(),
            key: key_desc,
            line: line.at.clone(),
        }),
        Err(Refusal::UnknownKey) => Err(format!(
            "the signer's key {key_desc} is not in allowed_signers {}",
            allowed.path.display()
        )),
        Err(Refusal::Namespace(m)) | Err(Refusal::Time(m)) => {
            Err(format!("the signer's key {key_desc} is refused: {m}"))
        }
    }
}
