"""Content Credentials (C2PA) on every video the project writes, with `c2pa-python`.

The manifest says: made by dvp_hub (its version), the action ``c2pa.created`` with the digital source
type ``trainedAlgorithmicMedia`` (IPTC: made by a model trained on sampled content), the target's name
and model card, and the SHA-256 of the source video's file name (never the source itself).

Signing identity, in order:
1. the user's: ``DVP_C2PA_CERT`` (PEM certificate chain, signer first) and ``DVP_C2PA_KEY`` (PEM private
   key), ``DVP_C2PA_ALG`` (default ``es256``);
2. otherwise a local pair made on first use in the user's config folder (``$DVP_CONFIG_DIR``, else
   ``$XDG_CONFIG_HOME/dvp_hub``, else ``~/.config/dvp_hub``; ``c2pa/``): a local CA and a signing
   certificate it issued (C2PA refuses self-signed end-entity certificates). Such a signature proves
   that the file has not changed since it was signed, not who signed it: no trust list knows the CA.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import tempfile

from .. import __version__
from ..video import register_signer

logger = logging.getLogger("dvp_hub.provenance")

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ASSERTION = "org.dvp_hub.reenactment"


def config_dir() -> str:
    base = os.environ.get("DVP_CONFIG_DIR")
    if not base:
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        base = os.path.join(xdg, "dvp_hub")
    return base


def _local_identity() -> tuple[bytes, bytes]:
    """The local certificate chain and key (PEM), made on first use."""
    folder = os.path.join(config_dir(), "c2pa")
    cert_path, key_path = os.path.join(folder, "signer-chain.pem"), os.path.join(folder, "signer-key.pem")
    if os.path.isfile(cert_path) and os.path.isfile(key_path):
        with open(cert_path, "rb") as c, open(key_path, "rb") as k:
            return c.read(), k.read()
    chain, key = _make_local_identity()
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".new-", dir=folder)
    with open(os.path.join(tmp, "chain"), "wb") as fh:
        fh.write(chain)
    fd = os.open(os.path.join(tmp, "key"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # the key: owner only
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    os.replace(os.path.join(tmp, "key"), key_path)
    os.replace(os.path.join(tmp, "chain"), cert_path)
    os.rmdir(tmp)
    return chain, key


def _make_local_identity() -> tuple[bytes, bytes]:
    from cryptography import x509  # lazy: cryptography (~0.15 s), first signing only; import dvp_hub starts fast
    from cryptography.hazmat.primitives import hashes, serialization  # lazy
    from cryptography.hazmat.primitives.asymmetric import ec  # lazy
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # lazy

    now = datetime.datetime.now(datetime.timezone.utc)
    user = os.environ.get("USER") or "user"

    def name(cn):
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dvp_hub local signing (unverified identity)"),
            ]
        )

    def usage(sign, cert_sign):
        return x509.KeyUsage(sign, False, False, False, False, cert_sign, cert_sign, False, False)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    span = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650))
    ca = (
        x509.CertificateBuilder()
        .subject_name(name(f"dvp_hub local CA ({user})"))
        .issuer_name(name(f"dvp_hub local CA ({user})"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(span[0])
        .not_valid_after(span[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(False, True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(f"dvp_hub ({user})"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(span[0])
        .not_valid_after(span[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(True, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = cert.public_bytes(pem) + ca.public_bytes(pem)
    return chain, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _signer():
    import c2pa  # lazy: c2pa-python's native library (~0.1 s); import dvp_hub imports this module

    cert, key = os.environ.get("DVP_C2PA_CERT"), os.environ.get("DVP_C2PA_KEY")
    if cert or key:
        if not (cert and key):
            raise ValueError("set both DVP_C2PA_CERT and DVP_C2PA_KEY (PEM files), or neither")
        with open(cert, "rb") as c, open(key, "rb") as k:
            chain, pem = c.read(), k.read()
        alg = os.environ.get("DVP_C2PA_ALG", "es256")
    else:
        chain, pem = _local_identity()
        alg = "es256"
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg.encode(), chain, pem, None))


def manifest(title: str, provenance: dict | None = None) -> dict:
    """The manifest definition for a generated video (``provenance``: target, model_card, mode, source)."""
    p = dict(provenance or {})
    source = p.pop("source", None)
    if source:
        p["source_name_sha256"] = hashlib.sha256(os.path.basename(str(source)).encode()).hexdigest()
    from .watermark import PAYLOAD  # lazy: watermark imports cv2 (~0.1 s); import dvp_hub imports this module

    p.setdefault("invisible_watermark", PAYLOAD)
    agent = {"name": "dvp_hub", "version": __version__}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "format": "video/mp4",
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                            "softwareAgent": agent,
                            "description": "Deep Video Portraits reenactment: a synthetic video of a real person.",
                        }
                    ]
                },
            },
            {"label": ASSERTION, "data": p},
        ],
    }


def sign_video(src: str, dest: str, title: str, provenance: dict | None = None) -> bool:
    """Write ``src`` with a C2PA manifest to ``dest``. On failure returns False and logs one line saying
    why (the caller keeps the unsigned video)."""
    try:
        import c2pa  # lazy: a c2pa that fails to load is a logged warning here, not a broken import dvp_hub

        builder = c2pa.Builder(json.dumps(manifest(title, provenance)))
        builder.sign_file(src, dest, _signer())
        return True
    except Exception as err:  # noqa: BLE001 - signing must never lose the video
        if os.path.exists(dest):
            os.remove(dest)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        logger.warning(f"{title}: written without Content Credentials (C2PA signing failed: {reason[:200]}).")
        return False


def read_credentials(path: str) -> dict:
    """What a file's C2PA manifest says: ``present``, ``valid``, ``state``, ``generator``,
    ``digital_source_type``, ``target``, ``model_card``, or ``error`` when it cannot be read."""
    import c2pa  # lazy: c2pa-python's native library; import dvp_hub and dvp verify import this module

    try:
        reader = c2pa.Reader(path)
    except Exception as err:  # noqa: BLE001 - a missing or broken manifest is a finding, not a crash
        text = str(err)
        if "ManifestNotFound" in type(err).__name__ or "no JUMBF" in text or "not found" in text.lower():
            return {"present": False, "valid": False}
        return {
            "present": True,
            "valid": False,
            "state": "Invalid",
            "error": text.splitlines()[0][:200] if text else type(err).__name__,
        }
    try:
        state = reader.get_validation_state() or "Unknown"
        active = reader.get_active_manifest() or {}
        results = reader.get_validation_results() or {}
    finally:
        reader.close() if hasattr(reader, "close") else None
    codes = [f.get("code") for f in (results.get("activeManifest") or {}).get("failure", [])]
    # an unknown signer (the local CA) is not a broken file: integrity holds, identity is unproven
    trusted = "signingCredential.untrusted" not in codes
    failures = [c for c in codes if c != "signingCredential.untrusted"]
    out = {"present": True, "valid": state != "Invalid" and not failures, "trusted": trusted, "state": state}
    if failures:
        out["failures"] = failures
    gen = (active.get("claim_generator_info") or [{}])[0]
    out["generator"] = f"{gen.get('name', '?')} {gen.get('version', '')}".strip()
    for a in active.get("assertions", []):
        if a.get("label", "").startswith("c2pa.actions"):
            for act in a.get("data", {}).get("actions", []):
                if act.get("digitalSourceType"):
                    out["digital_source_type"] = act["digitalSourceType"].rsplit("/", 1)[-1]
        if a.get("label") == ASSERTION:
            out.update({k: v for k, v in a.get("data", {}).items() if k in ("target", "model_card", "mode")})
    return out


register_signer(sign_video)  # every synthetic video a VideoWriter finishes is signed
