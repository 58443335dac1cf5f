"""Proof of possession at every door a bound token opens: refresh, logout and its
simplejwt alias, verify, revocation. (The access check, :mod:`authapi.auth`, claims the
proof's ``jti`` in its own revocation read instead.)

One rule for all of them: a token bound to a key (``cnf.jkt``) acts only with a proof by
that key for this very request (:func:`authapi.dpop.check_request`: ``htm``, ``htu``,
``iat``, and ``ath`` when an access token goes along), whose ``jti`` was never used
before on any worker or instance. Each door decides what a refusal answers.
"""

from __future__ import annotations

from django.http import HttpRequest

from authapi import dpop, store, tokens
from authapi.errors import DPoPGrantInvalid, DPoPGrantNonce, DPoPInvalid, DPoPNonceNeeded


async def prove(
    request: HttpRequest, *bound: tokens.Claims | None, access_token: str | None = None
) -> dpop.Proof | None:
    """Check the request's proof against every bound token of ``bound``; None when none
    of them is bound. DPoPInvalid (401) or DPoPNonceNeeded when it fails.

    ``access_token``: the access token the proof goes with (its ``ath`` must match).
    """
    owners = [claims for claims in bound if claims is not None and claims.jkt is not None]
    if not owners:
        return None
    proof = dpop.check_request(request, access_token=access_token, required=True)
    if proof is None or any(claims.jkt != proof.jkt for claims in owners):
        raise DPoPInvalid("The DPoP proof is signed by another key than the token is bound to")
    key = store.dpop_jti_key(owners[0].user_id, proof.jkt, proof.jti)
    if not await store.claim_dpop_jti(key, dpop.proof_ttl_ms()):
        raise DPoPInvalid("The DPoP proof was used before (its jti is spent)")
    return proof


async def prove_grant(request: HttpRequest, claims: tokens.Claims) -> dpop.Proof | None:
    """:func:`prove` for a refresh, whose failures answer 400 (RFC 9449 §5)."""
    try:
        return await prove(request, claims)
    except DPoPNonceNeeded as exc:
        raise DPoPGrantNonce(exc.extra_headers["DPoP-Nonce"]) from None
    except DPoPInvalid as exc:
        raise DPoPGrantInvalid(exc.message) from None
