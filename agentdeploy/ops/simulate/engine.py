"""The discrete-event run of one agent's scale loop through one scenario.

Events, in time order (ties: the queue's order of scheduling): request arrivals (from the
scenario), request completions, nodes turning ready after their cold start, drains ending,
spot interruption notices (drawn per spot instance from the catalog's monthly rate, or a
scenario's wave), the node agents' polls of their load, each minute's publishing (nodes,
gateway, the group's own metrics) and each minute's alarm evaluation. Nothing ticks per second
between events, so a month of traffic costs its requests, not its seconds.

Node demand is the node agent's own `serving.node.demand.DemandWindow`, read every
`FleetRules.publishing.poll_interval_s` (requests in flight and vLLM's finished counter) and
published on the minute as one statistic set stamped with the minute it covers, zeros included.
The gateway and the group's metrics are published the same way (`PUBLISHED`). During a
metrics outage the node agents read but cannot publish. A replica's compute bounds its
throughput: a request that starts while more are in flight than the replica can finish in
their slot time takes proportionally longer (the planner's `compute_s` per request).
"""

from __future__ import annotations

import heapq
import math
import random

from agentdeploy.naming import METRIC_FLEET_SERVED, METRIC_NAMESPACE, METRIC_UNMET_DEMAND
from agentdeploy.ops.simulate.cloudwatch import Alarm, MetricStore, StatSet
from agentdeploy.ops.simulate.fleet import Group, GroupSpec, Instance
from agentdeploy.ops.simulate.gateway import GatewayWake, pick
from agentdeploy.ops.simulate.inputs import AgentInputs
from agentdeploy.ops.simulate.loop import TT_IN, TT_OUT, loop_alarms, modelled, tracking_capacity
from agentdeploy.ops.simulate.result import RunResult
from agentdeploy.ops.simulate.scenarios import Scenario
from agentdeploy.serving.node.demand import DemandWindow
from agentdeploy.stacks.alarm_eval import blocked_by_cooldown, cooldown_after, policy_capacity
from agentdeploy.stacks.scaling_rules import (
    ALERT,
    AUTOSCALING_NAMESPACE,
    DRAIN_HOOK,
    ELB_NAMESPACE,
    READY_HOOK,
    PolicyRule,
)

READY, COMPLETE, DRAIN_END, NOTICE, POLL, PUBLISH, EVAL, ABANDON, DROUGHT, RAIN = range(10)
#: Seconds after each minute's publishing that the alarms evaluate the periods completed then.
EVAL_OFFSET_S = 5.0
HOURS_PER_MONTH = 730.0
#: The standby's instance ids start here, so a node's id is unique across both groups.
STANDBY_IDS = 1_000_000


class Engine:
    def __init__(self, inp: AgentInputs, scenario: Scenario, seed: int) -> None:
        self.inp, self.sc = inp, scenario
        fleet, rules = inp.fleet, inp.rules
        self.rng = random.Random(f"{seed}:{inp.name}:{scenario.name}:spot")
        drain_s = float(rules.hook(DRAIN_HOOK).timeout_s)
        self.ready_timeout_s = float(rules.hook(READY_HOOK).timeout_s)
        self.main = Group(GroupSpec(rules.min_replicas, rules.max_replicas, fleet.on_demand_base_capacity,
                                    fleet.on_demand_percentage_above_base, fleet.cold_start_s, inp.routable_s, drain_s,
                                    inp.notice_s))
        self.standby = Group(GroupSpec(0, rules.standby.max_size, rules.standby.max_size, 100, fleet.cold_start_s,
                                       inp.routable_s, drain_s, inp.notice_s), next_id=STANDBY_IDS)
        alarm_rules = loop_alarms(rules)
        self.policies: dict[str, PolicyRule] = {p.key: p for p in rules.policies}
        modelled(rules, alarm_rules, self.policies)
        self.alarms = [Alarm(rule) for rule in alarm_rules]
        self.cooldown_until: dict[str, float | None] = {"main": None, "standby": None}
        self.store = MetricStore()
        self.gateway = GatewayWake(inp.wake)
        self.queue: list[tuple[float, int, int, Instance | None]] = []
        self.seq = 0
        self.result = RunResult(inp.name, scenario.name, scenario.end_s / 86400.0)
        self.unmet = self.served_minute = 0
        self.cold_since: float | None = None
        self.last_arrival = -math.inf
        self.was_zero = False
        #: Per node: the demand window since its last publish, and vLLM's finished counter.
        self.windows: dict[int, DemandWindow] = {}
        self.finished: dict[int, int] = {}
        self.spot_rate_per_s = inp.spot_interruptions_per_month / (HOURS_PER_MONTH * 3600.0)

    # --- the queue -------------------------------------------------------------------------
    def at(self, t: float, kind: int, inst: Instance | None = None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (t, self.seq, kind, inst))

    def run(self) -> RunResult:
        sc, rules = self.sc, self.inp.rules
        warm = max(rules.min_replicas, min(rules.max_replicas, sc.warm))
        self.main.desired = warm
        for _ in range(warm):
            node = self.main.launch(0.0)
            node.phase, node.ready_at = "in_service", 0.0
            self._spot_draw(node, 0.0)
        self.at(rules.publishing.poll_interval_s, POLL)
        self.at(rules.publishing.publish_interval_s, PUBLISH)
        self.at(rules.publishing.publish_interval_s + EVAL_OFFSET_S, EVAL)
        for t in sc.waves:
            self.at(t, NOTICE)  # no instance: a wave
        for start, end in sc.droughts:
            self.at(start, DROUGHT)
            self.at(end, RAIN)
        times, services = sc.arrivals, sc.services
        i, n = 0, len(times)
        while True:
            t_event = self.queue[0][0] if self.queue else math.inf
            t_arrival = times[i] if i < n else math.inf
            if min(t_event, t_arrival) >= sc.end_s:
                break
            if t_arrival < t_event:
                self._arrive(t_arrival, services[i])
                i += 1
                continue
            t, _, kind, inst = heapq.heappop(self.queue)
            self._event(t, kind, inst)
        return self._finish()

    def _event(self, t: float, kind: int, inst: Instance | None) -> None:
        if kind == COMPLETE and inst is not None:
            self._complete(t, inst)
        elif kind == READY and inst is not None:
            if inst.phase == "pending":
                inst.phase = "in_service"
        elif kind == ABANDON and inst is not None:
            if inst.phase == "pending":  # the ready hook timed out: ABANDON terminates it
                group = self._group(inst)
                group.terminate(inst, t)
                for fresh in group.reconcile(t)[0]:
                    self._launched(fresh)
        elif kind == DRAIN_END and inst is not None:
            if inst.phase == "draining":
                self._group(inst).terminate(inst, t)
        elif kind == NOTICE:
            self._notice(t, inst)
        elif kind == DROUGHT:
            self.main.spot_blocked = True
            self._notice(t, None, share=1.0)
        elif kind == RAIN:  # spot capacity is back: the group's pending launches go through
            self.main.spot_blocked = False
            for fresh in self.main.reconcile(t)[0]:
                self._launched(fresh)
        elif kind == POLL:
            self._poll(t)
        elif kind == PUBLISH:
            self._publish(t)
        elif kind == EVAL:
            self._evaluate(t)

    def _group(self, inst: Instance) -> Group:
        return self.main if inst in self.main.instances else self.standby

    def _nodes(self) -> list[Instance]:
        return [i for g in (self.main, self.standby) for i in g.instances if i.phase != "terminated"]

    # --- requests --------------------------------------------------------------------------
    def _arrive(self, t: float, service_s: float) -> None:
        r = self.result
        r.requests += 1
        self.last_arrival = t
        target = pick(self._nodes(), self.main.desired, self.inp.fleet.max_concurrency_per_replica)
        if isinstance(target, Instance):
            target.in_flight += 1
            # A replica's compute bounds its throughput: with more requests in flight than it can
            # finish in their slot time, each one takes proportionally longer.
            service_s *= max(1.0, target.in_flight * self.inp.compute_s / self.inp.service_s) if self.inp.service_s else 1.0
            r.fleet_served += 1
            self.served_minute += 1
            if self.cold_since is not None:
                r.wake_s.append(t - self.cold_since)
                self.cold_since = None
            self.at(t + service_s, COMPLETE, target)
            return
        r.fallback[target] += 1
        self.unmet += 1
        if target == "cold_start" and self.cold_since is None:
            self.cold_since = t
        if target != "overload":
            desired = self.gateway.decide(self.main.desired, self.main.spec.max_size, t)
            if desired is not None:
                self._set(self.main, desired, t)

    def _complete(self, t: float, inst: Instance) -> None:
        inst.in_flight -= 1
        self.finished[inst.id] = self.finished.get(inst.id, 0) + 1
        if inst.phase == "draining" and not inst.interrupted and inst.in_flight == 0:
            self._group(inst).terminate(inst, t)

    # --- the groups ------------------------------------------------------------------------
    def _set(self, group: Group, desired: int, t: float) -> None:
        before = group.desired
        after = group.set_desired(desired)
        if group is self.main and before != after:
            if after == 0:
                self.was_zero = True
                window = self.inp.fleet.idle_minutes * 60.0
                if t - self.last_arrival < window or any(i.in_flight for i in self.main.instances):
                    self.result.busy_scale_to_zero += 1
            elif before == 0 and self.was_zero:
                self.result.zero_cycles += 1
        launched, drained = group.reconcile(t)
        for inst in launched:
            # the standby's nodes stand in for lost spot capacity (the gateway's reason: spot loss)
            inst.replaces_interrupted = group is self.standby
            self._launched(inst)
        for inst in drained:
            if inst.phase == "draining":
                if inst.in_flight == 0:
                    group.terminate(inst, t)
                else:
                    self.at(inst.drain_deadline or t, DRAIN_END, inst)

    def _launched(self, inst: Instance) -> None:
        """A new instance serves after its cold start, unless its ready hook times out first
        (default result ABANDON: the group terminates it and launches another)."""
        if self.inp.fleet.cold_start_s > self.ready_timeout_s:
            self.at(inst.launched_at + self.ready_timeout_s, ABANDON, inst)
        else:
            self.at(inst.ready_at, READY, inst)
        self._spot_draw(inst, inst.launched_at)

    def _spot_draw(self, inst: Instance, t: float) -> None:
        if inst.market == "spot" and self.spot_rate_per_s > 0:
            when = t + self.rng.expovariate(self.spot_rate_per_s)
            if when < self.sc.end_s:
                self.at(when, NOTICE, inst)

    def _notice(self, t: float, inst: Instance | None, share: float = 0.5) -> None:
        """One instance's interruption notice, or (inst None) a wave: `share` of the serving spot
        nodes (at least one)."""
        if inst is None:
            spot = [i for i in self.main.instances if i.phase == "in_service" and i.market == "spot"]
            victims = spot[:math.ceil(len(spot) * share)]
        else:
            victims = [inst]
        for victim in victims:
            group = self._group(victim)
            if victim.phase not in ("pending", "in_service"):
                continue
            replacement = group.interrupt(victim, t)
            if victim.drain_deadline is not None:  # it was serving: it drains until the notice ends
                self.at(victim.drain_deadline, DRAIN_END, victim)
            if replacement is not None:
                self._launched(replacement)

    # --- metrics and alarms ----------------------------------------------------------------
    def _read(self, inst: Instance) -> None:
        """One node agent reading: requests in flight, and vLLM's finished-requests counter."""
        window = self.windows.setdefault(inst.id, DemandWindow())
        window.add(float(inst.in_flight), float(self.finished.get(inst.id, 0)))

    def _poll(self, t: float) -> None:
        for inst in self._nodes():
            if inst.phase == "in_service":
                self._read(inst)
        self.at(t + self.inp.rules.publishing.poll_interval_s, POLL)

    def _publish(self, t: float) -> None:
        """Each minute, on the minute: every publisher's datum for the minute that just ended."""
        pub = self.inp.rules.publishing
        period = t - pub.publish_interval_s
        silent = any(a <= t < b for a, b in self.sc.outages)
        node_key = f"{METRIC_NAMESPACE}/{pub.metric_name}/agent"
        for inst in self._nodes():
            if inst.phase != "in_service":
                self.windows.pop(inst.id, None)
                continue
            self._read(inst)  # the agent closes each window with one more reading
            window = self.windows.pop(inst.id)
            self.windows[inst.id] = window.next()
            stats = window.statistics()
            if silent or stats is None:
                continue
            if pub.published_as == "statistic-set":
                datum = StatSet(stats.minimum, stats.maximum, stats.sum, stats.sample_count)
            else:  # one point sample: the last reading, blind to requests between readings
                datum = StatSet.of(window.readings[-1])
            self.store.put(node_key, period, datum)
        put = self.store.put
        put(f"{METRIC_NAMESPACE}/{METRIC_UNMET_DEMAND}/agent", period, StatSet.of(self.unmet))
        put(f"{METRIC_NAMESPACE}/{METRIC_FLEET_SERVED}/agent", period, StatSet.of(self.served_minute))
        self.unmet = self.served_minute = 0
        for dims, group in (("group", self.main), ("standby", self.standby)):
            put(f"{AUTOSCALING_NAMESPACE}/GroupDesiredCapacity/{dims}", period, StatSet.of(group.desired))
            # a node under a spot notice is still InService to the group until it is terminated
            in_service = sum(1 for i in group.instances if i.phase == "in_service" or (i.interrupted and i.phase == "draining"))
            put(f"{AUTOSCALING_NAMESPACE}/GroupInServiceInstances/{dims}", period, StatSet.of(in_service))
        healthy = len(self.main.serving()) + len(self.standby.serving())
        put(f"{ELB_NAMESPACE}/HealthyHostCount/target", period, StatSet.of(healthy))
        self.at(t + pub.publish_interval_s, PUBLISH)

    def _evaluate(self, t: float) -> None:
        for alarm in self.alarms:
            before = alarm.state
            state = alarm.evaluate(self.store, t)
            actions = alarm.rule.alarm_actions if state == "ALARM" else alarm.rule.ok_actions if state == "OK" else ()
            latest = next((v for v in reversed(alarm.values) if v is not None), alarm.rule.threshold)
            for action in actions:
                self._act(action, alarm, latest, t, state != before)
        self.at(t + 60.0, EVAL)

    def _act(self, action: str, alarm: Alarm, value: float, t: float, changed: bool) -> None:
        """One alarm action: Auto Scaling actions run every minute in the state, a notification
        only on the change (counted as an alert when it enters ALARM)."""
        if action == ALERT:
            if changed and alarm.state == "ALARM":
                self.result.alerts[alarm.rule.key] = self.result.alerts.get(alarm.rule.key, 0) + 1
            return
        if action.startswith((TT_OUT, TT_IN)):
            self._track(action, value, t)
            return
        policy = self.policies[action]
        group = self.main if policy.group == "main" else self.standby
        if blocked_by_cooldown(policy, t, self.cooldown_until[policy.group]):
            return
        before = group.desired
        desired = policy_capacity(policy, current=before, min_size=group.spec.min_size, max_size=group.spec.max_size,
                                  alarm=alarm.rule, value=value)
        if desired == before:
            return
        self._set(group, desired, t)
        activity_end = t + (self.inp.fleet.cold_start_s if desired > before else group.spec.drain_s)
        until = cooldown_after(policy, activity_end)
        if until is not None:
            self.cooldown_until[policy.group] = until

    def _track(self, action: str, value: float, t: float) -> None:
        """Target tracking, out or in (see loop.py)."""
        out = action.startswith(TT_OUT)
        policy = self.policies[action[len(TT_OUT if out else TT_IN):]]
        new = tracking_capacity(len(self.main.serving()), value, policy.target_value or 1.0)
        if out:
            if new > self.main.desired:
                self._set(self.main, new, t)
            return
        warming = any(i.phase == "pending" or t - i.ready_at < (policy.warmup_s or 0)
                      for i in self.main.instances if i.live)
        if not warming and max(1, new) < self.main.desired:
            self._set(self.main, max(1, new), t)

    def _finish(self) -> RunResult:
        r, end = self.result, self.sc.end_s
        for group in (self.main, self.standby):
            for market, hours in group.gpu_hours(end).items():
                r.gpu_hours[market] += hours
            r.scale_out += group.scale_out_events
            r.scale_in += group.scale_in_events
        fleet = self.inp.fleet
        r.gpu_usd = r.gpu_hours["spot"] * fleet.hourly_usd_spot + r.gpu_hours["on_demand"] * fleet.hourly_usd_on_demand
        r.fallback_usd = r.fallback_requests * self.inp.fallback_usd_per_request
        return r
