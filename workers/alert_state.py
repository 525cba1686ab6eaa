"""The alert state of each (model, source) in Redis, and the one decision per run id it
makes: whether a result opens an alert, reminds of it, is kept quiet, resolves it, or is
older than what was already seen. docs/fleet.md, "The alert cycle".

Two streaks are kept apart: drift (opened by a ``drift`` result, resolved by ``ok``) and
failure (opened by an ``error`` result, resolved by any other verdict). Both are updated
by one Lua script, so two consumers never decide from the same state; the decision is
stored under the run id, so a redelivered entry gets the same decision back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from workers.config import RedisConfig

# What a result can cause, in the order they are sent.
FIRE = "fire"  # the model entered drift: alert
REMIND = "remind"  # still in drift, remind_after_s since the last notification
SUPPRESS = "suppress"  # still in drift: nothing sent
RESOLVE = "resolve"  # back to ok: resolved
FAIL = "fail"  # the model's runs started failing (verdict error): alert
FAIL_REMIND = "fail_remind"
FAIL_SUPPRESS = "fail_suppress"
FAIL_RESOLVE = "fail_resolve"  # a run that did not fail after failing ones: resolved
OUT_OF_ORDER = "out_of_order"  # older than the newest run seen: the state is left alone

# KEYS: state hash, decision key. ARGV: run id, run time (Unix s, "" unknown), verdict,
# now (Unix s), remind_after_s, state_ttl_s, decision_ttl_s.
_DECIDE = """
local decided = redis.call('GET', KEYS[2])
if decided then return decided end
local run_id, verdict, now = ARGV[1], ARGV[3], tonumber(ARGV[4])
local remind_after = tonumber(ARGV[5])
local run_at = tonumber(ARGV[2])
local state = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do state[flat[i]] = flat[i + 1] end
local actions = {}
local function decide()
  local decision = cjson.encode({actions = actions, drift_since = state['drift_since'] or '',
    drift_run_id = state['drift_run_id'] or '', failing_since = state['failing_since'] or '',
    failing_run_id = state['failing_run_id'] or ''})
  redis.call('SET', KEYS[2], decision, 'EX', ARGV[7])
  return decision
end
local newest = tonumber(state['run_at'] or '')
if run_at and newest and run_at < newest then
  table.insert(actions, 'out_of_order')
  return decide()
end
local function streak(prefix, notify, quiet, reminded)
  if state[prefix] == '1' then
    if now - tonumber(state[prefix .. '_notified_at']) >= remind_after then
      state[prefix .. '_notified_at'] = ARGV[4]
      table.insert(actions, reminded)
    else
      table.insert(actions, quiet)
    end
  else
    state[prefix] = '1'
    state[prefix .. '_since'] = run_at and ARGV[2] or ARGV[4]
    state[prefix .. '_run_id'] = run_id
    state[prefix .. '_notified_at'] = ARGV[4]
    table.insert(actions, notify)
  end
end
if verdict == 'error' then
  streak('failing', 'fail', 'fail_suppress', 'fail_remind')
else
  if state['failing'] == '1' then
    state['failing'] = '0'
    table.insert(actions, 'fail_resolve')
  end
  if verdict == 'drift' then
    streak('drift', 'fire', 'suppress', 'remind')
  elseif verdict == 'ok' and state['drift'] == '1' then
    state['drift'] = '0'
    table.insert(actions, 'resolve')
  end
end
if run_at then state['run_at'] = ARGV[2] end
state['run_id'] = run_id
local fields = {}
for name, value in pairs(state) do
  table.insert(fields, name)
  table.insert(fields, value)
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[6])
return decide()
"""


@dataclass(frozen=True)
class AlertDecision:
    """What one run id causes, and the streaks it belongs to (for the payloads)."""

    actions: tuple[str, ...]
    drift_since: float | None = None  # when the open (or just resolved) drift began
    drift_run_id: str = ""  # the run that opened it
    failing_since: float | None = None
    failing_run_id: str = ""


def state_key(redis_config: RedisConfig, model: str, source: str) -> str:
    return redis_config.key("alert", source, model)


def decision_key(redis_config: RedisConfig, run_id: str) -> str:
    return redis_config.key("alert", "decision", run_id)


def decide(client: redis.Redis, redis_config: RedisConfig, *, model: str, source: str,
           run_id: str, verdict: str, run_at: float | None, now: float,
           remind_after_s: float, state_ttl_s: int, decision_ttl_s: int) -> AlertDecision:
    """Update the (model, source) state with one result, atomically, once per run id."""
    raw = client.eval(_DECIDE, 2, state_key(redis_config, model, source),
                      decision_key(redis_config, run_id), run_id,
                      "" if run_at is None else repr(run_at), verdict, repr(now),
                      repr(float(remind_after_s)), int(state_ttl_s), int(decision_ttl_s))
    document = json.loads(raw)
    actions = document.get("actions") or []  # cjson writes an empty table as {}
    return AlertDecision(actions=tuple(actions) if isinstance(actions, list) else (),
                         drift_since=_number(document.get("drift_since")),
                         drift_run_id=document.get("drift_run_id") or "",
                         failing_since=_number(document.get("failing_since")),
                         failing_run_id=document.get("failing_run_id") or "")


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
