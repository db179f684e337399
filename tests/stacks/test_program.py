"""The real Pulumi program under the mock runtime, for a plan with API, batch and GPU agents:
the resource graph and the inputs that carry the plan's decisions."""

from __future__ import annotations

import json

import pytest
import yaml

from agentdeploy.naming import (
    DIM_AGENT,
    DIM_STACK,
    METRIC_DEMAND,
    METRIC_NAMESPACE,
    METRIC_SPEND_USD,
    ROLE_GPU_FLEET,
    TAG_AGENT,
    TAG_ROLE,
    TAG_STACK,
)
from agentdeploy.planner import build_plan, load_decision_file
from agentdeploy.stacks.policy import UNTAGGABLE, Resource, check_all, check_tags, plain, plan_limits, resource_tags
from agentdeploy.templates.gpu_node import decode_user_data
from tests.stacks.harness import EXAMPLES, mixed_decision_file, run_main

ASG = "aws:autoscaling/group:Group"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
POLICY = "aws:autoscaling/policy:Policy"


def _config(decision, **extra):
    return {"agentdeploy:decisionFile": str(decision), "aws:region": "us-east-1",
            "agentdeploy:anthropicApiKey": "sk-ant-test-key-000000", **extra}


@pytest.fixture(scope="module")
def decision(tmp_path_factory):
    return mixed_decision_file(tmp_path_factory.mktemp("program"))


@pytest.fixture(scope="module")
def plan(decision):
    return build_plan(load_decision_file(decision)).model_copy(update={"stack": "test"})


@pytest.fixture(scope="module")
def run(decision):
    return run_main(_config(decision), secret_keys=["agentdeploy:anthropicApiKey"])


@pytest.fixture(scope="module")
def router_run(tmp_path_factory):
    """Two GPU agents (the router's ticket-router twice, as ticket-router and answer-drafts):
    proves each fleet's role reads only its own secret."""
    doc = yaml.safe_load((EXAMPLES / "high-volume-router.yaml").read_text())
    doc["agents"] = {"ticket-router": doc["agents"]["ticket-router"], "answer-drafts": doc["agents"]["ticket-router"]}
    path = tmp_path_factory.mktemp("router") / "two-fleets.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run = run_main(_config(path), secret_keys=["agentdeploy:anthropicApiKey"], stack="prod")
    assert run.exports["routes"] == {"ticket-router": "gpu", "answer-drafts": "gpu"}
    return run


def _fleet(plan):
    return next(a for a in plan.agents if a.route == "gpu")


def test_mixed_instances_policy_matches_plan(run, plan):
    agent = _fleet(plan)
    fleet = agent.fleet
    asg = run.mocks.one(ASG, "router-asg")
    assert asg.inputs["minSize"] == fleet.min_replicas
    assert asg.inputs["maxSize"] == fleet.max_replicas
    assert "desiredCapacity" not in asg.inputs  # owned by the autoscaler and the reaper
    mip = asg.inputs["mixedInstancesPolicy"]
    dist = mip["instancesDistribution"]
    assert dist["onDemandBaseCapacity"] == fleet.on_demand_base_capacity
    assert dist["onDemandPercentageAboveBaseCapacity"] == fleet.on_demand_percentage_above_base
    assert dist["spotAllocationStrategy"] == fleet.spot_allocation_strategy == "price-capacity-optimized"
    overrides = [o["instanceType"] for o in mip["launchTemplate"]["overrides"]]
    assert overrides[0] == fleet.instance_type
    assert set(overrides) == set(fleet.instance_types) | {fleet.instance_type}
    assert len(overrides) >= 2
    assert mip["launchTemplate"]["launchTemplateSpecification"]["launchTemplateId"].startswith("lt-")
    assert asg.inputs["capacityRebalance"] is True
    assert len(asg.inputs["vpcZoneIdentifiers"]) == 2  # private subnets in two AZs
    assert asg.inputs["healthCheckType"] == "ELB"
    # The ready hook, not the grace period, covers the cold start: grace starts once the node
    # reported healthy, and the hook waits twice the planned cold start before giving up.
    hook = run.mocks.one("aws:autoscaling/lifecycleHook:LifecycleHook", "router-ready-hook")
    assert hook.inputs["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert hook.inputs["heartbeatTimeout"] >= 2 * fleet.cold_start_s
    assert asg.inputs["healthCheckGracePeriod"] == 120
    # The template's own version (not $Latest), so a new version changes the group and rolls it.
    assert mip["launchTemplate"]["launchTemplateSpecification"]["version"] == "1"
    assert asg.inputs["instanceRefresh"]["strategy"] == "Rolling"


def test_on_demand_base_and_percentage_above_it_reach_the_asg(tmp_path, monkeypatch):
    """A latency-critical interactive GPU agent: the planner gives it an on-demand base. The
    planner keeps the percentage above the base at 0, so the plan's fleet gets 25 here; with
    two distinct non-zero numbers, a constant or a swapped field in the program fails."""
    from agentdeploy.stacks import program

    doc = yaml.safe_load((EXAMPLES / "high-volume-router.yaml").read_text())
    router = doc["agents"]["ticket-router"]
    router["latency"] = {"p95_s": 2.5, "audience": "interactive"}
    doc["agents"] = {"ticket-router": router}
    decision = tmp_path / "critical.yaml"
    decision.write_text(yaml.safe_dump(doc, sort_keys=False))
    planned = {}
    load_plan = program.load_plan

    def with_on_demand_share(path, stack, plan_file=None):
        plan, catalog = load_plan(path, stack, plan_file)
        agent = plan.agents[0]
        fleet = agent.fleet.model_copy(update={"on_demand_percentage_above_base": 25})
        planned["fleet"] = fleet
        return plan.model_copy(update={"agents": [agent.model_copy(update={"fleet": fleet})]}), catalog

    monkeypatch.setattr(program, "load_plan", with_on_demand_share)
    run = run_main(_config(decision), secret_keys=["agentdeploy:anthropicApiKey"])
    fleet = planned["fleet"]
    assert fleet.on_demand_base_capacity == 1  # the planner's rule, not the tweak
    dist = run.mocks.one(ASG, "router-asg").inputs["mixedInstancesPolicy"]["instancesDistribution"]
    assert (dist["onDemandBaseCapacity"], dist["onDemandPercentageAboveBaseCapacity"]) == (
        fleet.on_demand_base_capacity, fleet.on_demand_percentage_above_base) == (1, 25)


def test_asg_tags_propagate_and_name_the_fleet(run, plan):
    asg = run.mocks.one(ASG, "router-asg")
    tags = {t["key"]: t for t in asg.inputs["tags"]}
    assert tags[TAG_ROLE]["value"] == ROLE_GPU_FLEET
    assert tags[TAG_AGENT]["value"] == _fleet(plan).name
    assert tags[TAG_STACK]["value"] == "test"
    assert all(t["propagateAtLaunch"] for t in tags.values())


# The scale loop's alarms and policies (idle, wake, silent, tracking): test_fleet_scaling.py.


def test_target_tracking_on_llm_demand_not_cpu(run, plan):
    tracking = run.mocks.one(POLICY, "demand-tracking")
    conf = tracking.inputs["targetTrackingConfiguration"]
    assert "predefinedMetricSpecification" not in conf
    assert conf["targetValue"] == _fleet(plan).fleet.target_queue_per_replica
    spec = conf["customizedMetricSpecification"]
    assert (spec["namespace"], spec["metricName"], spec["statistic"]) == (METRIC_NAMESPACE, METRIC_DEMAND, "Average")
    assert {d["name"]: d["value"] for d in spec["metricDimensions"]} == {DIM_STACK: "test", DIM_AGENT: _fleet(plan).name}


def test_target_group_waits_for_model_load(run, plan):
    tg = next(r for r in run.mocks.of_type("aws:lb/targetGroup:TargetGroup") if "fleet-" in r.name)
    hc = tg.inputs["healthCheck"]
    assert (hc["path"], hc["port"]) == ("/healthz", "8081")
    assert tg.inputs["port"] == 8000
    # its deregistration delay outlasts the node's drain: test_fleet_drain.py


def test_only_the_gateway_reaches_vllm(run):
    """The fleets' load balancer (its health checks) and the gateway's tasks (they route to each
    node and read its agent's /healthz), nothing else."""
    sgs = {r.name: r for r in run.mocks.of_type("aws:ec2/securityGroup:SecurityGroup")}
    node = next(r for n, r in sgs.items() if "node-sg" in n)
    lb_sg_id = "fleets-sg-id"
    assert {p["fromPort"] for p in node.inputs["ingress"]} == {8000, 8081}
    assert all(p["securityGroups"] == [lb_sg_id, "gateway-task-sg-id"] and "cidrBlocks" not in p
               for p in node.inputs["ingress"])
    fleets_sg = sgs["fleets-sg"]
    assert all(p["securityGroups"] == ["gateway-task-sg-id"] for p in fleets_sg.inputs["ingress"])
    assert run.mocks.one("aws:lb/loadBalancer:LoadBalancer", "fleets").inputs["internal"] is True


def test_each_fleet_role_reads_only_its_own_secret(router_run):
    wheel_key = router_run.mocks.one("aws:s3/bucketObjectv2:BucketObjectv2").inputs["key"]
    policies = {r.name: json.loads(r.inputs["policy"]) for r in router_run.mocks.of_type("aws:iam/rolePolicy:RolePolicy")
                if r.name.startswith("fleet-") and r.name.endswith("-policy") and "drain" not in r.name}
    assert set(policies) == {"fleet-ticket-router-policy", "fleet-answer-drafts-policy"}
    for name, doc in policies.items():
        agent = name[len("fleet-"):-len("-policy")]
        secret_stmt = [s for s in doc["Statement"] if s["Action"] == "secretsmanager:GetSecretValue"]
        assert len(secret_stmt) == 1
        # its own vLLM key, and the HF token because its weights (meta-llama) are gated
        assert secret_stmt[0]["Resource"] == sorted([f"arn:aws:secret:us-east-1:123456789012:secrets-{agent}-vllm-key",
                                                     "arn:aws:secret:us-east-1:123456789012:secrets-hf-token"])
        other = [s for s in doc["Statement"] if s is not secret_stmt[0]]
        assert other == [{"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
                          "Condition": {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}}},
                         {"Effect": "Allow", "Action": "s3:GetObject",
                          "Resource": [f"arn:aws:bucket:us-east-1:123456789012:node-artifacts-bucket/{wheel_key}"]},
                         {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                          "Resource": [f"arn:aws:logs:us-east-1:123456789012:log-group:/agentdeploy/prod/{agent}/nodes"
                                       ":log-stream:*"]}]


def test_drain_permissions_name_only_the_fleets_own_group_and_target_group(router_run):
    for agent in ("ticket-router", "answer-drafts"):
        doc = json.loads(router_run.mocks.one("aws:iam/rolePolicy:RolePolicy", f"fleet-{agent}-drain-policy").inputs["policy"])
        resources = sorted(r for s in doc["Statement"] for r in s["Resource"])
        assert resources == sorted([f"arn:aws:group:us-east-1:123456789012:fleet-{agent}-asg",
                                    f"arn:aws:group:us-east-1:123456789012:fleet-{agent}-ondemand-asg",
                                    f"arn:aws:targetgroup:us-east-1:123456789012:fleet-{agent}-tg"])


def test_node_agent_knows_what_to_drain(run, plan):
    user_data = decode_user_data(run.mocks.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"])
    agent = _fleet(plan).name
    assert f"AGENTDEPLOY_TARGET_GROUP_ARNS=arn:aws:targetgroup:us-east-1:123456789012:fleet-{agent}-tg" in user_data
    # the node reads its group (spot or on-demand standby) from its instance tags
    assert "AGENTDEPLOY_ASG_NAME=\n" in user_data
    assert "aws:autoscaling:groupName" in user_data
    asg = run.mocks.one(ASG, "router-asg")
    assert asg.inputs["name"] == f"agentdeploy-test-{agent}"
    assert "initialLifecycleHooks" not in asg.inputs  # those reach a group only when it is created
    drain = run.mocks.one("aws:autoscaling/lifecycleHook:LifecycleHook", "router-drain-hook")
    assert (drain.inputs["name"], drain.inputs["lifecycleTransition"], drain.inputs["autoscalingGroupName"]) == (
        "drain", "autoscaling:EC2_INSTANCE_TERMINATING", f"agentdeploy-test-{agent}")


def test_every_resource_is_tagged_and_passes_policy(run, router_run, plan):
    for r in (run, router_run):
        resources = [Resource(x.typ, x.name, x.inputs) for x in r.mocks.resources]
        assert len(resources) > 40
        violations = check_all(resources, max_replicas=plan_limits(plan) if r is run else None)
        assert violations == [], "\n".join(map(str, violations))
    tagged = [x for x in run.mocks.resources if x.typ.startswith("aws:") and "tags" in x.inputs]
    assert len(tagged) > 30
    # the check is not vacuous: an untagged VPC fails it
    assert check_tags(Resource("aws:ec2/vpc:Vpc", "bare", {"cidrBlock": "10.0.0.0/16"}))


def _owned_by(name: str, agent: str) -> bool:
    """Logical names of an agent's own resources: agent-<a>, fleet-<a>-*, secrets-<a>-*, alerts-<a>-*."""
    return name == f"agent-{agent}" or any(name.startswith(f"{p}-{agent}-") for p in ("fleet", "secrets", "alerts"))


@pytest.mark.parametrize("which", ["run", "router_run"])
def test_every_per_agent_resource_carries_the_agent_tag(which, request):
    """Cost per agent and `deploy status` find an agent's resources by its tag, not only its ASG."""
    run = request.getfixturevalue(which)
    agents = set(run.exports["routes"])
    for agent in agents:
        owned = [r for r in run.mocks.resources if r.typ.startswith("aws:") and r.typ not in UNTAGGABLE
                 and _owned_by(r.name, agent)]
        untagged = [r.name for r in owned if (resource_tags(Resource(r.typ, r.name, r.inputs)) or {}).get(TAG_AGENT) != agent]
        assert untagged == [], f"{agent}: {untagged}"
        types = {r.typ.split(":")[-1] for r in owned}
        if run.exports["routes"][agent] == "gpu":
            assert types >= {"LaunchTemplate", "Role", "InstanceProfile", "TargetGroup", "Listener", "SecurityGroup",
                             "Group", "MetricAlarm", "Secret"}, types
            lt = next(r for r in owned if r.typ == "aws:ec2/launchTemplate:LaunchTemplate")
            assert {s["resourceType"]: s["tags"][TAG_AGENT] for s in lt.inputs["tagSpecifications"]} == {
                "instance": agent, "volume": agent}
            alarms = {r.name.rsplit("-", 1)[-1] for r in owned if r.typ.endswith("MetricAlarm") and r.name.startswith("fleet-")}
            assert alarms == {"wake", "idle", "silent", "healthy", "starved"}
        else:
            assert types == {"Parameter", "MetricAlarm"}, types


def test_api_and_batch_agents_publish_their_config(run, plan):
    params = {r.inputs["name"]: r for r in run.mocks.of_type("aws:ssm/parameter:Parameter")}
    for agent in plan.agents:
        key = f"/agentdeploy/test/{agent.name}/config"
        if agent.route == "gpu":
            assert key not in params
            continue
        value = plain(params[key].inputs["value"])  # pulumi-aws marks SSM values secret in state
        doc = json.loads(value)
        assert doc["model"] == agent.model
        assert doc["max_tokens"] == agent.max_tokens
        assert doc["streaming"] == agent.streaming
        assert doc["batch"] == (agent.route == "batch") == agent.batch
        assert doc["cache"]["ttl"] == agent.cache.ttl
        assert doc["cache"]["breakpoints"] == agent.cache.breakpoints
        assert doc["anthropic_api_key_secret_arn"].startswith("arn:aws:secret:")
        assert "sk-ant" not in value


def test_budget_and_spend_alarms_follow_the_plan(run, plan):
    budget = run.mocks.one("aws:budgets/budget:Budget")
    # AWS bills the fleets' GPU hours: the AWS Budget is their share of the budgets, as planned.
    assert float(budget.inputs["limitAmount"]) == pytest.approx(sum(a.budget.aws_usd for a in plan.agents))
    assert budget.inputs["costFilters"] == [{"name": "TagKeyValue", "values": ["user:agentdeploy:stack$test"]}]
    actual = sorted(n["threshold"] for n in budget.inputs["notifications"] if n["notificationType"] == "ACTUAL")
    assert actual == sorted({p for a in plan.agents for p in a.budget.thresholds_pct})
    topic_policy = json.loads(run.mocks.one("aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    assert {s["Principal"]["Service"] for s in topic_policy["Statement"]} == {
        "budgets.amazonaws.com", "cloudwatch.amazonaws.com", "events.amazonaws.com"}
    subs = run.mocks.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert sorted(s.inputs["endpoint"] for s in subs) == sorted(plan.alert_emails)
    spend = [r for r in run.mocks.of_type(ALARM) if r.inputs.get("metricName") == METRIC_SPEND_USD]
    assert len(spend) == sum(len(a.budget.thresholds_pct) for a in plan.agents)
    intake = next(a for a in plan.agents if a.name == "intake")
    at_100 = next(r for r in spend if r.inputs["dimensions"][DIM_AGENT] == "intake" and "100pct" in r.inputs["name"])
    # the gateway meters Claude spend only: its share of the budget, paced per day
    assert at_100.inputs["threshold"] == pytest.approx(intake.budget.gateway_usd / 30.4, rel=1e-2)


def test_spend_alarms_pace_the_share_the_gateway_meters(run, plan):
    """A GPU agent's SpendUSD is its Claude fallback's spend only: its alarms pace the plan's
    gateway share of the budget, not the whole budget (whose GPU hours AWS bills)."""
    from agentdeploy.planner import load_catalog

    days = load_catalog(include_home=False).assumptions.days_per_month
    spend = [r for r in run.mocks.of_type(ALARM) if r.inputs.get("metricName") == METRIC_SPEND_USD]
    gpu = _fleet(plan)
    assert gpu.budget.gateway_usd < gpu.budget.monthly_usd  # the fixture's fleet has a GPU share
    for pct in gpu.budget.thresholds_pct:
        alarm = next(r for r in spend if r.inputs["dimensions"][DIM_AGENT] == gpu.name and f"-{pct}pct" in r.inputs["name"])
        assert alarm.inputs["threshold"] == pytest.approx(gpu.budget.gateway_usd * pct / 100 / days, abs=1e-4)
        assert alarm.inputs["threshold"] < gpu.budget.monthly_usd * pct / 100 / days
    budget = run.mocks.one("aws:budgets/budget:Budget")
    # AWS bills the GPU hours and every agent's share of the fixed infrastructure
    assert float(budget.inputs["limitAmount"]) == pytest.approx(sum(a.budget.aws_usd for a in plan.agents))


def test_cost_allocation_tag_is_activated_only_when_opted_in(run, decision):
    """Off by default: activation needs the payer account and fails until AWS has billed the tag."""
    tag_type = "aws:costexplorer/costAllocationTag:CostAllocationTag"
    assert run.mocks.of_type(tag_type) == []
    opted = run_main(_config(decision, **{"agentdeploy:activateCostAllocationTag": "true"}),
                     secret_keys=["agentdeploy:anthropicApiKey"])
    tag = opted.mocks.one(tag_type)
    assert tag.inputs == {"tagKey": TAG_STACK, "status": "Active"}
    budget = opted.mocks.one("aws:budgets/budget:Budget")
    assert budget.inputs["costFilters"][0]["values"] == [f"user:{tag.inputs['tagKey']}$test"]  # the key it filters on
    off = run_main(_config(decision, **{"agentdeploy:activateCostAllocationTag": "false"}),
                   secret_keys=["agentdeploy:anthropicApiKey"])
    assert off.mocks.of_type(tag_type) == []


def test_gateway_config_discovers_each_fleets_nodes_and_wakes_its_group(run, plan):
    from agentdeploy.naming import NODE_HEALTH_PORT, VLLM_PORT
    from agentdeploy.serving.config import parse_config

    task = run.mocks.one("aws:ecs/taskDefinition:TaskDefinition")
    container = json.loads(task.inputs["containerDefinitions"])[0]
    env = {e["name"]: e["value"] for e in container["environment"]}
    config = parse_config(yaml.safe_load(env["AGENTDEPLOY_GATEWAY_CONFIG"]))
    assert config.stack == "test"
    assert set(config.agents) == {a.name for a in plan.agents}
    agent = _fleet(plan)
    upstream = config.upstreams[config.agents[agent.name].chain[0].upstream]
    asg = run.mocks.one(ASG, "router-asg")
    # Each node directly: no load balancer URL as a replica, the target group's health instead.
    assert upstream.replicas == []
    assert upstream.discovery is not None
    assert upstream.discovery.target_group_arn == f"arn:aws:targetgroup:us-east-1:123456789012:fleet-{agent.name}-tg"
    assert (upstream.discovery.region, upstream.discovery.port) == (plan.region, VLLM_PORT)
    assert upstream.node_health_port == NODE_HEALTH_PORT
    assert upstream.max_load_per_replica == agent.fleet.max_concurrency_per_replica  # one node's cap, per node
    assert upstream.wake is not None
    assert upstream.wake.asg_name == asg.inputs["name"]
    assert upstream.wake.capacity == max(1, agent.fleet.min_replicas)
    assert upstream.api_key.env == "VLLM_API_KEY_TICKET_ROUTER"
    assert container["command"][0].endswith("--port 8080")
    assert run.mocks.one("aws:ecs/service:Service").inputs["launchType"] == "FARGATE"
    # it publishes the spend the alarms watch and the unmet demand the backup wake alarm reads
    assert config.cloudwatch_interval_s == 60


def test_gateway_task_may_read_nodes_and_set_only_its_own_groups_capacity(router_run):
    policy = json.loads(router_run.mocks.one("aws:iam/rolePolicy:RolePolicy", "gateway-task-metrics").inputs["policy"])
    by_action = {a: st for st in policy["Statement"] for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    groups = sorted(f"arn:aws:group:us-east-1:123456789012:fleet-{a}-asg" for a in ("ticket-router", "answer-drafts"))
    assert by_action["autoscaling:SetDesiredCapacity"]["Resource"] == groups
    for read in ("elasticloadbalancing:DescribeTargetHealth", "ec2:DescribeInstances", "autoscaling:DescribeAutoScalingGroups"):
        assert by_action[read]["Resource"] == "*"
        assert by_action[read]["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    assert "autoscaling:UpdateAutoScalingGroup" not in by_action


def test_outputs_name_gateway_and_every_agent(run, plan):
    # HTTPS on the name the certificate covers, not the load balancer's own DNS name.
    assert run.exports["gatewayUrl"] == "https://gateway.example.com"
    assert run.exports["agentEndpoints"] == {a.name: {
        "anthropicBaseUrl": "https://gateway.example.com", "openaiBaseUrl": "https://gateway.example.com/v1",
        "model": a.name} for a in plan.agents}
    assert run.exports["routes"] == {a.name: a.route for a in plan.agents}


def test_existing_vpc_is_used_as_is(decision):
    run = run_main(_config(decision, **{
        "agentdeploy:vpcId": "vpc-123", "agentdeploy:privateSubnetIds": '["subnet-a", "subnet-b"]',
        "agentdeploy:publicSubnetIds": '["subnet-c", "subnet-d"]'}), secret_keys=["agentdeploy:anthropicApiKey"])
    assert not run.mocks.of_type("aws:ec2/vpc:Vpc")
    assert not run.mocks.of_type("aws:ec2/natGateway:NatGateway")
    assert run.mocks.one(ASG, "router-asg").inputs["vpcZoneIdentifiers"] == ["subnet-a", "subnet-b"]
    assert run.mocks.one("aws:lb/loadBalancer:LoadBalancer", "gateway").inputs["subnets"] == ["subnet-c", "subnet-d"]


def test_an_api_only_stack_keeps_a_positive_aws_budget(tmp_path):
    """API agents plan no GPU spend; the stack still gets a budget (their shares of the fixed
    infrastructure, at least the floor AWS can take)."""
    from agentdeploy.stacks.components.alerts import MIN_AWS_BUDGET_USD

    run = run_main(_config(EXAMPLES / "service-business.yaml"), secret_keys=["agentdeploy:anthropicApiKey"])
    budget = run.mocks.one("aws:budgets/budget:Budget")
    plan = build_plan(load_decision_file(EXAMPLES / "service-business.yaml"))
    assert float(budget.inputs["limitAmount"]) == pytest.approx(
        max(MIN_AWS_BUDGET_USD, sum(a.budget.aws_usd for a in plan.agents)))
    assert float(budget.inputs["limitAmount"]) >= MIN_AWS_BUDGET_USD > 0


def test_spot_starved_fleet_falls_back_to_on_demand(run, plan):
    """A spot group that wants capacity and has none in service for 10 minutes fills an
    on-demand standby group (same template, target group and hooks); OK empties it."""
    fleet = _fleet(plan).fleet
    main, standby = run.mocks.one(ASG, "router-asg"), run.mocks.one(ASG, "ondemand-asg")
    assert standby.inputs["name"] == main.inputs["name"] + "-ondemand"
    assert standby.inputs["minSize"] == 0
    dist = standby.inputs["mixedInstancesPolicy"]["instancesDistribution"]
    assert dist["onDemandPercentageAboveBaseCapacity"] == 100
    assert standby.inputs["targetGroupArns"] == main.inputs["targetGroupArns"]
    assert (standby.inputs["mixedInstancesPolicy"]["launchTemplate"]["launchTemplateSpecification"]
            == main.inputs["mixedInstancesPolicy"]["launchTemplate"]["launchTemplateSpecification"])
    hooks = {(h.inputs["autoscalingGroupName"], h.inputs["name"], h.inputs["lifecycleTransition"])
             for h in run.mocks.of_type("aws:autoscaling/lifecycleHook:LifecycleHook")}
    for group in (main.inputs["name"], standby.inputs["name"]):
        assert {(group, "ready", "autoscaling:EC2_INSTANCE_LAUNCHING"),
                (group, "drain", "autoscaling:EC2_INSTANCE_TERMINATING")} <= hooks
    alarm = run.mocks.one(ALARM, "spot-starved")
    metrics = {q["id"]: (q["metric"]["metricName"], q["metric"]["dimensions"]) for q in alarm.inputs["metricQueries"]
               if q.get("metric")}
    assert metrics == {"desired": ("GroupDesiredCapacity", {"AutoScalingGroupName": main.inputs["name"]}),
                       "serving": ("GroupInServiceInstances", {"AutoScalingGroupName": main.inputs["name"]})}
    assert alarm.inputs["evaluationPeriods"] == 10
    assert alarm.inputs["treatMissingData"] == "notBreaching"
    fill, empty = run.mocks.one(POLICY, "ondemand-fill"), run.mocks.one(POLICY, "ondemand-empty")
    assert fill.inputs["scalingAdjustment"] == max(1, fleet.min_replicas)
    assert empty.inputs["scalingAdjustment"] == 0
    assert alarm.inputs["alarmActions"] == [f"arn:aws:policy:us-east-1:123456789012:{fill.name}"]
    assert alarm.inputs["okActions"] == [f"arn:aws:policy:us-east-1:123456789012:{empty.name}"]


def test_node_logs_go_to_the_fleets_log_group(run, plan):
    agent = _fleet(plan).name
    group = run.mocks.one("aws:cloudwatch/logGroup:LogGroup", f"fleet-{agent}-logs")
    assert group.inputs["name"] == f"/agentdeploy/test/{agent}/nodes"
    assert group.inputs["retentionInDays"] == 30
    user_data = decode_user_data(run.mocks.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"])
    assert f'"log_group_name": "/agentdeploy/test/{agent}/nodes"' in user_data
    assert "/opt/agentdeploy/bin/logs.sh" in user_data
    # Session Manager instead of SSH: AWS's managed policy, no key pair, no port 22
    ssm = run.mocks.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", f"fleet-{agent}-ssm")
    assert ssm.inputs["policyArn"] == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    lt = run.mocks.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert "keyName" not in lt.inputs
    node_sg = next(r for r in run.mocks.of_type("aws:ec2/securityGroup:SecurityGroup") if "node-sg" in r.name)
    assert 22 not in {p["fromPort"] for p in node_sg.inputs["ingress"]}
