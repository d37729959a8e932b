"""Model signing: Ed25519 signatures over a model's canonical content (`imnrisk keygen/sign/verify`,
`predict --trusted-key`). The SHA-256 inside model.json detects accidents; only a signature by a
key you trust tells that a model is the one its author released."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import atomic_path, check_input_file, safe_outputs
from IMNRiskLib.scoring.modelfile import canonical, read_model_document, signature_of, with_signature

ALGORITHM = "ed25519"


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature  # start-up time: cryptography loads only when used
        from cryptography.hazmat.primitives import serialization  # start-up time: cryptography loads only when used
        # start-up time: cryptography loads only when used
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise InputError("model signing needs the 'cryptography' package: pip install cryptography") from None
    return serialization, ed25519, InvalidSignature


def _public_bytes(public_key) -> bytes:
    serialization, _, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(public_key) -> str:
    """SHA-256 of the raw 32-byte public key (what a signature names its key by)."""
    return hashlib.sha256(_public_bytes(public_key)).hexdigest()


def generate_key_pair(prefix: Union[str, Path], force: bool = False) -> Tuple[Path, Path]:
    """Write PREFIX.key (private, PEM PKCS#8, mode 0600) and PREFIX.pub (public, PEM)."""
    serialization, ed25519, _ = _crypto()
    if str(prefix).endswith(("/", os.sep)) or Path(prefix).is_dir():
        raise InputError("names a folder; give a file name prefix (e.g. keys/author)", file=str(prefix))
    private_path, public_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    safe_outputs([private_path, public_path], [], force)
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with atomic_path(private_path) as tmp:
        tmp.write_bytes(private)
        os.chmod(tmp, 0o600)
    private_path.chmod(0o600)
    with atomic_path(public_path) as tmp:
        tmp.write_bytes(public)
    return private_path, public_path


def _load_key(path: Union[str, Path], private: bool):
    serialization, ed25519, _ = _crypto()
    path = check_input_file(path, "key file")
    data = path.read_bytes()
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a PEM {'private' if private else 'public'} key ({str(exc)[:80]})", file=str(path)) from None
    wanted = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, wanted):
        raise InputError(f"not an Ed25519 {'private' if private else 'public'} key", file=str(path))
    return key


def sign_model(model_path: Union[str, Path], key_path: Union[str, Path], out: Union[str, Path, None] = None,
               force: bool = False) -> Path:
    """Add an Ed25519 signature of the model's canonical content (the model is checked first). Without
    `out` the model is signed in place (its content unchanged, a signature added); `out` follows the
    output rule: never the key or the model, an existing file only with `force`."""
    if out is not None:
        safe_outputs([out], [model_path, key_path], force)
    doc = read_model_document(model_path)
    key = _load_key(key_path, private=True)
    signature = key.sign(canonical(doc))
    doc = with_signature(doc, {"algorithm": ALGORITHM, "key_sha256": key_fingerprint(key.public_key()),
                               "value": base64.b64encode(signature).decode("ascii")})
    target = Path(out) if out else Path(model_path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    return target


def verify_model(doc: Dict[str, Any], key_path: Union[str, Path], source: str) -> str:
    """Check the model's signature against a trusted public key; return the key's fingerprint."""
    _, _, invalid = _crypto()
    key = _load_key(key_path, private=False)
    sig = signature_of(doc)
    if not isinstance(sig, dict) or "value" not in sig:
        raise InputError("model is not signed (imnrisk sign); refused with --trusted-key", file=source)
    if sig.get("algorithm") != ALGORITHM:
        raise InputError(f"signature algorithm {sig.get('algorithm')!r} is not {ALGORITHM}", file=source)
    if sig.get("key_sha256") != key_fingerprint(key):
        raise InputError("model is signed by another key than the trusted one", file=source, field="signature")
    try:
        key.verify(base64.b64decode(str(sig["value"]), validate=True), canonical(doc))
    except (invalid, ValueError):
        raise InputError("signature does not match the model's content (edited after signing)", file=source,
                         field="signature") from None
    return key_fingerprint(key)


def load_trusted(model_path: Union[str, Path], key_path: Union[str, Path]) -> Dict[str, Any]:
    """Read a model file and require a valid signature by the trusted key."""
    doc = read_model_document(model_path)
    verify_model(doc, key_path, str(model_path))
    return doc
