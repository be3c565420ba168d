"""The sandbox's control API: faults, reset and clock."""


def test_fault_rule_is_listed_and_cleared(sandbox):
    rule = sandbox.fault(platform="x", path="/api/2/tweets", kind="rate_limit", retry_after=3)
    assert sandbox.admin.get("/faults").json()[0]["id"] == rule["id"]
    sandbox.admin.delete(f"/faults/{rule['id']}")
    assert sandbox.admin.get("/faults").json() == []


def test_unknown_fault_field_is_refused(sandbox):
    response = sandbox.admin.post("/faults", json={"platform": "x", "bogus": 1})
    assert response.status_code == 400
    assert "bogus" in response.text


def test_clock_moves_forward(sandbox):
    before = sandbox.admin.post("/clock", json={"advance": 0}).json()["now"]
    after = sandbox.admin.post("/clock", json={"advance": 3600}).json()["now"]
    assert after - before >= 3600
