//! idmint's MakeCredential against a real TPM: a credential made by
//! `idmint_pki::tpm::make_credential` for a software TPM's EK (RSA-2048 and
//! ECC P-256) and its AK's Name is activated by that TPM with
//! `tpm2_activatecredential`, which returns the secret; a credential made for
//! another Name is refused by the TPM.

use idmint_pki::tpm::{make_credential, EndorsementKey, TpmPublic};
use idmint_testkit::swtpm::{SoftTpm, SWTPM_PACKAGES};

fn activation_file(made: &idmint_pki::tpm::MadeCredential) -> Vec<u8> {
    // tpm2-tools' credential file: magic, version, TPM2B_ID_OBJECT,
    // TPM2B_ENCRYPTED_SECRET.
    let mut file = vec![0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1];
    file.extend_from_slice(&made.credential_blob);
    file.extend_from_slice(&made.encrypted_secret);
    file
}

fn activate(tpm: &SoftTpm, ek_alg: &str) {
    let dir = tpm.dir();
    tpm.tool(
        "tpm2_createek",
        &["-c", "ek.ctx", "-G", ek_alg, "-u", "ek.pub"],
    );
    tpm.tool(
        "tpm2_createak",
        &[
            "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u",
            "ak.pub", "-n", "ak.name",
        ],
    );
    let ek = TpmPublic::from_tpm2b(&std::fs::read(dir.join("ek.pub")).unwrap()).unwrap();
    let ek = EndorsementKey::from_public(&ek).unwrap();
    let ak = TpmPublic::from_tpm2b(&std::fs::read(dir.join("ak.pub")).unwrap()).unwrap();
    assert_eq!(ak.name(), std::fs::read(dir.join("ak.name")).unwrap());
    let secret: Vec<u8> = (1..=32).collect();
    let made = make_credential(&ek, &ak.name(), &secret).unwrap();
    std::fs::write(dir.join("cred.in"), activation_file(&made)).unwrap();
    let activated = activate_file(tpm, "cred.in");
    assert_eq!(activated.as_deref(), Some(&secret[..]), "{ek_alg} EK");

    // Made for another Name: the TPM's integrity check refuses it.
    let mut other = ak.name();
    other[5] ^= 1;
    let made = make_credential(&ek, &other, &secret).unwrap();
    std::fs::write(dir.join("cred.bad"), activation_file(&made)).unwrap();
    assert_eq!(activate_file(tpm, "cred.bad"), None);
}

fn activate_file(tpm: &SoftTpm, file: &str) -> Option<Vec<u8>> {
    let _ = std::fs::remove_file(tpm.dir().join("cred.out"));
    tpm.tool(
        "tpm2_startauthsession",
        &["--policy-session", "-S", "session.ctx"],
    );
    tpm.tool("tpm2_policysecret", &["-S", "session.ctx", "-c", "e"]);
    let (ok, _) = tpm.try_tool(
        "tpm2_activatecredential",
        &[
            "-c",
            "ak.ctx",
            "-C",
            "ek.ctx",
            "-i",
            file,
            "-o",
            "cred.out",
            "-P",
            "session:session.ctx",
        ],
    );
    tpm.tool("tpm2_flushcontext", &["session.ctx"]);
    ok.then(|| std::fs::read(tpm.dir().join("cred.out")).unwrap())
}

#[test]
fn a_real_tpm_activates_idmints_credential() {
    if !SoftTpm::available() {
        idmint_testkit::skip("swtpm and tpm2-tools", SWTPM_PACKAGES);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tpm = SoftTpm::start(dir.path());
    activate(&tpm, "rsa");
    activate(&tpm, "ecc");
}
