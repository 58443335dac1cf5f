"""DPoP at every door, over real sockets: a token copied from a bound session, without its
key, ends nothing and is vouched for by nothing. Each door is tried with no proof, with a
thief's own key, and with a spent refresh token; after each try the owner's refresh (with
its key) still works and its access token still opens /me.

Also RFC 7662's ``token_type``: the scheme, ``Bearer`` or ``DPoP``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import PASSWORD, LiveServer
from tests.dpop_client import Key

CLIENT = "orders:introspection-secret-0123456789"
BASIC = {"Authorization": "Basic " + base64.b64encode(CLIENT.encode()).decode()}
META = "/.well-known/oauth-authorization-server"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    env = {"AUTHAPI_LOGIN_RATE": "0", "AUTHAPI_RESOURCE_CLIENTS": CLIENT}
    with LiveServer(env=env) as live:
        yield live


@pytest.fixture
async def http(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        yield c


class Owner:
    """A client with a bound session: its key, its current pair."""

    def __init__(self, http: httpx.AsyncClient, server: LiveServer, key: Key) -> None:
        self.http, self.server, self.key = http, server, key
        self.pair: dict = {}

    def url(self, path: str) -> str:
        return self.server.url + path

    def proof(self, method: str, path: str, token: str | None = None, key: Key | None = None):
        return (key or self.key).proof(method, self.url(path), token=token)

    async def login(self, user) -> Owner:
        answer = await self.http.post(
            "/api/auth/login",
            json={"username": user.username, "password": PASSWORD},
            headers={"DPoP": self.proof("POST", "/api/auth/login")},
        )
        assert answer.status_code == 200, answer.text
        self.pair = answer.json()
        assert self.pair["token_type"] == "DPoP"
        return self

    async def refresh(self) -> None:
        """Spend the current refresh token with the key: the session must be alive."""
        answer = await self.http.post(
            "/api/auth/refresh",
            json={"refresh": self.pair["refresh"]},
            headers={"DPoP": self.proof("POST", "/api/auth/refresh")},
        )
        assert answer.status_code == 200, answer.text
        self.pair = answer.json()

    async def me(self) -> int:
        access = self.pair["access"]
        headers = {
            "Authorization": f"DPoP {access}",
            "DPoP": self.proof("GET", "/api/auth/me", token=access),
        }
        return (await self.http.get("/api/auth/me", headers=headers)).status_code

    async def assert_untouched(self) -> None:
        assert await self.me() == 200
        await self.refresh()
        assert await self.me() == 200


@pytest.fixture
async def owner(http, server, user) -> Owner:
    return await Owner(http, server, Key()).login(user)


def _refused(answer: httpx.Response, name: str = "") -> None:
    assert answer.status_code == 401, (name, answer.text)
    assert answer.json()["code"] == "invalid_dpop_proof", (name, answer.text)
    assert "DPoP" in answer.headers["WWW-Authenticate"]


async def _attempts(owner: Owner, path: str, token_of):
    """(name, token, headers) of each try at ``path``: the token ``token_of(owner)``
    picks, and a spent refresh token, each without a proof and with a thief's."""
    thief = Key()
    spent = owner.pair["refresh"]
    await owner.refresh()
    for name, token in (("current", token_of(owner)), ("spent", spent)):
        yield f"{name}, no proof", token, {}
        yield f"{name}, thief's key", token, {"DPoP": owner.proof("POST", path, key=thief)}
        wrong_path = owner.proof("POST", "/api/auth/refresh")  # the owner's, another door
        yield f"{name}, proof for another door", token, {"DPoP": wrong_path}


# --- logout and its simplejwt alias: 401 -----------------------------------------------------


@pytest.mark.parametrize("path", ["/api/auth/logout", "/api/token/blacklist/"])
async def test_logout_of_a_bound_refresh_token_needs_its_key(http, owner, path):
    async for name, token, headers in _attempts(owner, path, lambda o: o.pair["refresh"]):
        answer = await http.post(path, json={"refresh": token}, headers=headers)
        _refused(answer, name)
        await owner.assert_untouched()
    # The owner, with its key: the session ends.
    done = await http.post(
        path, json={"refresh": owner.pair["refresh"]}, headers={"DPoP": owner.proof("POST", path)}
    )
    assert done.status_code in (200, 204), done.text
    assert await owner.me() == 401


async def test_logout_with_the_bound_access_token_along(http, owner):
    path = "/api/auth/logout"
    access, refresh = owner.pair["access"], owner.pair["refresh"]
    thief = Key()
    for headers in (
        {"Authorization": f"Bearer {access}", "DPoP": owner.proof("POST", path)},
        {"Authorization": f"DPoP {access}", "DPoP": owner.proof("POST", path, key=thief)},
        {"Authorization": f"DPoP {access}", "DPoP": owner.proof("POST", path, token="a.b.c")},
    ):
        _refused(await http.post(path, json={"refresh": refresh}, headers=headers))
        assert await owner.me() == 200
    # As the SPA sends it: the access token under DPoP, one proof with its ath.
    headers = {"Authorization": f"DPoP {access}", "DPoP": owner.proof("POST", path, token=access)}
    assert (await http.post(path, json={"refresh": refresh}, headers=headers)).status_code == 204
    assert await owner.me() == 401


async def test_a_thiefs_own_logout_cannot_carry_the_owners_bound_access_token(
    http, owner, make_user
):
    """The thief logs out a session of its own, sending the stolen access token along."""
    path = "/api/auth/logout"
    thief = await make_user()
    own = (
        await http.post("/api/auth/login", json={"username": thief.username, "password": PASSWORD})
    ).json()
    stolen = owner.pair["access"]
    for headers in (
        {"Authorization": f"Bearer {stolen}"},
        {"Authorization": f"DPoP {stolen}", "DPoP": Key().proof("POST", owner.url(path))},
    ):
        _refused(await http.post(path, json={"refresh": own["refresh"]}, headers=headers))
    assert await owner.me() == 200
    await owner.assert_untouched()


# --- logout-all: the access check -------------------------------------------------------------


async def test_logout_all_with_a_bound_access_token_needs_its_key(http, owner):
    path = "/api/auth/logout-all"
    access = owner.pair["access"]
    thief = Key()
    for headers in (
        {"Authorization": f"Bearer {access}"},
        {"Authorization": f"DPoP {access}"},
        {"Authorization": f"DPoP {access}", "DPoP": owner.proof("POST", path, access, thief)},
        {"Authorization": f"DPoP {access}", "DPoP": owner.proof("POST", path)},  # no ath
        {"Authorization": f"DPoP {access}", "DPoP": owner.proof("GET", path, access)},
    ):
        answer = await http.post(path, headers=headers)
        assert answer.status_code == 401, answer.text
        assert "DPoP" in answer.headers["WWW-Authenticate"]
        await owner.assert_untouched()
        access = owner.pair["access"]
    # A spent refresh token is no access token at all.
    spent = owner.pair["refresh"]
    await owner.refresh()
    answer = await http.post(
        path, headers={"Authorization": f"DPoP {spent}", "DPoP": owner.proof("POST", path, spent)}
    )
    assert answer.status_code == 401
    await owner.assert_untouched()
    access = owner.pair["access"]
    headers = {"Authorization": f"DPoP {access}", "DPoP": owner.proof("POST", path, access)}
    assert (await http.post(path, headers=headers)).status_code == 204
    assert await owner.me() == 401


# --- revocation (RFC 7009): 200, nothing revoked ----------------------------------------------


@pytest.mark.parametrize("kind", ["refresh", "access"])
async def test_revoking_a_bound_token_without_its_key_revokes_nothing(http, owner, kind):
    path = "/api/auth/revoke"
    async for name, token, headers in _attempts(owner, path, lambda o: o.pair[kind]):
        answer = await http.post(path, data={"token": token}, headers=headers)
        assert answer.status_code == 200 and answer.json() == {}, (name, answer.text)
        await owner.assert_untouched()
    # With its key (and, for an access token, its ath), it is revoked.
    token = owner.pair[kind]
    proof = owner.proof("POST", path, token if kind == "access" else None)
    assert (
        await http.post(path, data={"token": token}, headers={"DPoP": proof})
    ).status_code == 200
    assert await owner.me() == 401


async def test_a_spent_bound_refresh_token_never_ends_the_family_through_revoke(http, owner):
    """Not even with the key: reuse is detected at /refresh, where the key is needed too."""
    path = "/api/auth/revoke"
    spent = owner.pair["refresh"]
    await owner.refresh()
    proof = owner.proof("POST", path)
    answer = await http.post(path, json={"token": spent}, headers={"DPoP": proof})
    assert answer.status_code == 200 and answer.json() == {}
    await owner.assert_untouched()


async def test_revoking_an_access_token_needs_its_ath(http, owner):
    path = "/api/auth/revoke"
    access = owner.pair["access"]
    for proof in (owner.proof("POST", path), owner.proof("POST", path, token="a.b.c")):
        answer = await http.post(path, data={"token": access}, headers={"DPoP": proof})
        assert answer.status_code == 200
        assert await owner.me() == 200


async def test_revocation_asks_for_the_nonce_when_nonces_are_on(make_user):
    env = {"AUTHAPI_LOGIN_RATE": "0", "AUTHAPI_DPOP_NONCE": "1"}
    user = await make_user()
    with LiveServer(env=env) as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            key = Key()
            login = f"{live.url}/api/auth/login"
            first = await http.post(
                login,
                json={"username": user.username, "password": PASSWORD},
                headers={"DPoP": key.proof("POST", login)},
            )
            nonce = first.headers["DPoP-Nonce"]
            pair = (
                await http.post(
                    login,
                    json={"username": user.username, "password": PASSWORD},
                    headers={"DPoP": key.proof("POST", login, nonce=nonce)},
                )
            ).json()
            revoke = f"{live.url}/api/auth/revoke"
            asked = await http.post(
                revoke, data={"token": pair["refresh"]}, headers={"DPoP": key.proof("POST", revoke)}
            )
            assert asked.status_code == 400
            assert asked.json()["code"] == "use_dpop_nonce"
            nonce = asked.headers["DPoP-Nonce"]
            proof = key.proof("POST", revoke, nonce=nonce)
            done = await http.post(revoke, data={"token": pair["refresh"]}, headers={"DPoP": proof})
            assert done.status_code == 200
            refresh = f"{live.url}/api/auth/refresh"
            gone = await http.post(
                refresh,
                json={"refresh": pair["refresh"]},
                headers={"DPoP": key.proof("POST", refresh, nonce=nonce)},
            )
            assert gone.status_code == 401


# --- verify: 401 without a proof for that request ---------------------------------------------


@pytest.mark.parametrize("path", ["/api/auth/verify", "/api/token/verify/"])
@pytest.mark.parametrize("kind", ["refresh", "access"])
async def test_verify_of_a_bound_token_needs_a_proof_for_that_request(http, owner, path, kind):
    async for name, token, headers in _attempts(owner, path, lambda o: o.pair[kind]):
        answer = await http.post(path, json={"token": token}, headers=headers)
        _refused(answer, name)
        await owner.assert_untouched()
    token = owner.pair[kind]
    ath = token if kind == "access" else None
    ok = await http.post(
        path, json={"token": token}, headers={"DPoP": owner.proof("POST", path, ath)}
    )
    assert ok.status_code == 200 and ok.json() == {}, ok.text
    if kind == "access":  # its ath must be of this token
        other = owner.proof("POST", path, token="a.b.c")
        _refused(await http.post(path, json={"token": token}, headers={"DPoP": other}))
    # a spent bound refresh token with a valid proof: revoked, as for any token
    spent = owner.pair["refresh"]
    await owner.refresh()
    answer = await http.post(
        path, json={"token": spent}, headers={"DPoP": owner.proof("POST", path)}
    )
    assert answer.status_code in (400, 401), answer.text
    assert answer.json()["code"] == "token_not_valid"
    await owner.assert_untouched()


async def test_verify_of_a_bearer_token_is_unchanged(http, user):
    pair = (
        await http.post("/api/auth/login", json={"username": user.username, "password": PASSWORD})
    ).json()
    for token in (pair["access"], pair["refresh"]):
        assert (await http.post("/api/auth/verify", json={"token": token})).status_code == 200


async def test_a_proof_is_good_once_at_these_doors(http, owner):
    for path in ("/api/auth/verify", "/api/auth/logout"):
        body = {"token": owner.pair["refresh"], "refresh": owner.pair["refresh"]}
        proof = owner.proof("POST", path)
        assert (await http.post(path, json=body, headers={"DPoP": proof})).status_code < 300
        again = await http.post(path, json=body, headers={"DPoP": proof})
        _refused(again)
        assert "used before" in again.json()["detail"]


# --- introspection: token_type is the scheme ---------------------------------------------------


async def test_introspection_token_type_is_the_scheme(http, owner, user, make_user):
    for kind in ("access", "refresh"):
        body = (
            await http.post("/api/auth/introspect", data={"token": owner.pair[kind]}, headers=BASIC)
        ).json()
        assert body["active"] is True
        assert body["token_type"] == "DPoP"
        assert body["authapi_token_kind"] == kind
        assert body["cnf"] == {"jkt": owner.key.thumbprint}
    plain = await make_user()
    pair = (
        await http.post("/api/auth/login", json={"username": plain.username, "password": PASSWORD})
    ).json()
    for kind in ("access", "refresh"):
        body = (
            await http.post("/api/auth/introspect", data={"token": pair[kind]}, headers=BASIC)
        ).json()
        assert body["token_type"] == "Bearer" and body["authapi_token_kind"] == kind
        assert "cnf" not in body
