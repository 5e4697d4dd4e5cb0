"""`python -m benchmarks.pipeline` (`make bench`): a raw aiokafka passthrough against CaseBridge,
the pipeline (b) and the whole system (c).

All run on the real, secured broker (SASL_SSL with SCRAM-SHA-512 over the deployment's private
CA, ACLs enforced by StandardAuthorizer), in one run, on the same machine, so the ratio between
them is what to compare across machines and runs (absolute figures drift on shared machines):

(a) baseline: a plain aiokafka copier. N events are pre-loaded into an input topic, then one
    consumer (`getmany`, the same batch size and timeout as the services) and one idempotent
    producer (acks=all, the services' linger, batch and request sizes) copy them to an output
    topic, committing offsets after every batch once the batch's sends are acknowledged.
    It connects as a principal of its own, `casebridge-bench`, exactly as a service does (same
    TLS, same SCRAM mechanism, ACLs only on its two topics and its consumer group), so both
    sides pay for TLS, authentication and authorisation alike. Messages/s.
(b) pipeline: intake, router and audit run as one OS process each (`casebridge run
    --services <name>`), so the load spreads over the cores; each connects as its own Kafka
    principal and database role, reading its secrets from the run directory. After a warm-up
    round trip, N valid events are published at full speed by the agencies themselves: one
    idempotent producer per agency, with that agency's credentials, to its own inbound topic
    (`casebridge.in.<agency>`, `ce_source` and `reporting_agency` naming it). The benchmark
    waits until the audit log holds every row they must produce: 1 `received`, 1 `validated`,
    1 `routed` and one `delivered` row per inbox the routing policy chooses (computed with the
    policy itself).
    Events/s = N / (first publish -> the last of those rows' `recorded_at`). The latency of an
    event is from its publish (just before `send`) to the `recorded_at` of the last of its
    audit rows (the routing-decision row's latency is printed too).
(c) the whole system: (b) plus the cases service, four processes. An event is done once the
    case it opens is published by the cases service's outbox relay and audited (its case
    event and its updates to the agencies: `published` rows caused by the event). First a
    burst of N events; then, on the same processes, --paced-events more at half the rate the
    burst reached, for latency below saturation. `--backlog` instead publishes N events
    before the services start and reports how much memory each needs to work through them.
Each phase prints its rate and ratio to (a), latencies, CPU per event per component and
each service's peak RSS (VmHWM); the last lines judge the targets (config.py).

Each measurement is a deployment of its own on the running stack (`Runs`): its own topic
prefix and consumer-group prefix, set up as `casebridge agencies sync` sets one up (topics,
SCRAM credentials and ACLs, as the super user, plus the baseline's principal and topics) and a
fresh database (created by the superuser `postgres` as infra/postgres sets up `casebridge`,
owned by and migrated as `casebridge_owner`). The audit rows
are read as the read-only `casebridge_auditor`. Afterwards the run's topics, ACLs and database
are dropped (--keep keeps them, and the service logs).

The CPU lines say where the cores went during each measurement: every service process, the
broker and PostgreSQL of infra/stack.sh, this process, and the rest of the machine; "CPU per
event" divides by the events, and "ready to run but waiting for a CPU" (schedstat) shows how
much other work on the machine held the services back. --profile py-spy adds where each
service spends its CPU.

The parts: `events` (the synthetic stream), `deployment`, `processes` (service processes),
`clients` (the agencies' producers), `passthrough` (a), `system` (b, c), `cpu` (/proc
accounting), `report` (what is printed) and `__main__` (the command).

Events are synthetic, shaped like the demo's (referrals of adults and children, return
requests, SAR alerts). Nothing here prints or logs a payload.
"""
