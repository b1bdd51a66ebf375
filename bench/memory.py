"""Memory recall on 100,000 memories: the HNSW index against the exact answer, in the same run.

Memories are what the product learns, written the way it writes them (conductor.live.memory's
moments of sessions, agents.builtin.campaign's campaigns), generated deterministically from
varied event, session and campaign templates and embedded with wordllama in batches. They belong
to 200 organizers of very different sizes (Zipf: the largest holds ~17,000, the smallest a few),
and each query is a new moment or campaign of an organizer drawn in proportion to their memory
(busy organizers decide more often).

For each query, the recall statement (agents.memory: the HNSW index of the organizer's bucket,
iterative scan, the organizer's filter inside the scan) against the exact nearest (the same rows,
every distance computed: the way recall worked before, and the baseline), each in a pass of its
own after a warm-up pass of other queries:
- recall@10: the share of the exact 10 nearest the index finds (ties at the 10th distance
  count as found). Goal >= 0.98.
- latency: p50 / p95 of the statement, and of `agents.memory.recall` as the decision calls it
  (query embedded, transaction, settings, rows). Goal p95 < 5 ms.

Run with `make bench` (its own data directory, var/bench).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings_test")
os.environ["CONDUCTOR_DATA_DIR"] = str(ROOT / "var" / "bench")
os.environ["DEBUG"] = "false"  # no query log
os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

from conductor.core import embedded  # noqa: E402

# Importing settings starts nothing: the benchmark starts its own embedded services.
embedded.start(settings.DATA_DIR, database_url=settings.DATABASE_URL, redis_url=settings.REDIS_URL)
django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.utils import timezone  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from agents import memory  # noqa: E402
from agents.builtin import campaign  # noqa: E402
from agents.models import MemoryItem  # noqa: E402
from conductor.live import memory as moments  # noqa: E402
from conductor.live.models import EngagementSample, Event, LiveSession  # noqa: E402

MEMORIES = 100_000
ORGANIZERS = 200
ZIPF = 0.9  # organizer sizes fall as 1 / rank^ZIPF
CAMPAIGN_SHARE = 0.15
QUERIES = 1_000
K = 10
SEED = 16
PREFIX = "bench-memory-"

CITIES = ["Berlin", "Lisbon", "Austin", "Nairobi", "Osaka", "Toronto", "Lyon", "Krakow",
          "Bangalore", "Sao Paulo", "Melbourne", "Dublin", "Seattle", "Tallinn",
          "Cape Town"]  # fmt: skip
SERIES = ["PyCon", "PyData", "RustConf", "KubeCon", "JSConf", "DevOpsDays", "Growth Summit",
          "Product Camp", "Design Systems Day", "Data Council", "SaaStr Meetup", "Web Summit",
          "HR Tech Forum", "Fintech Week", "Climate Tech Expo", "Indie Game Jam", "MedTech Live",
          "Open Source Night", "AI Engineer World", "Startup Pitch Night"]  # fmt: skip
SUBJECTS = ["packaging Python libraries", "async Rust in production", "Kubernetes operators",
            "pandas at scale", "search ads that convert", "onboarding new hires remotely",
            "design tokens across teams", "observability on a budget", "LLM evaluation",
            "carbon accounting for cloud workloads", "React server components",
            "fundraising for a seed round", "payments fraud detection", "game feel and juice",
            "clinical trial data pipelines", "maintaining an open source project",
            "retrieval augmented generation", "pricing a SaaS product", "zero trust networking",
            "accessibility audits", "GraphQL federation", "feature flags and rollouts",
            "machine learning in the browser", "time series forecasting", "SQL performance",
            "building a community", "customer interviews", "WebAssembly outside the browser",
            "incident response", "type systems for humans"]  # fmt: skip
FORMATS = ["Keynote: {s}", "Workshop on {s}", "{s}, a case study", "Panel: the future of {s}",
           "Lessons from {s}", "Live coding: {s}", "{s} in 30 minutes", "Q&A about {s}",
           "What we got wrong about {s}", "Deep dive: {s}"]  # fmt: skip
TOPICS = ["", "hands-on", "for beginners", "advanced", "with live demos", "from the trenches"]
ANOMALIES = ["SUDDEN_DROP", "GRADUAL_DECLINE", "LOW_ENGAGEMENT", "MASS_EXIT", "NONE"]
BANDS = ["very_low", "low", "moderate", "high"]
KINDS = ["chat", "reactions", "questions", "poll_votes", "leaves"]
CAMPAIGN_NAMES = ["Early birds", "Last call", "Speaker announcement", "Ticket giveaway",
                  "Sponsor spotlight", "Workshop seats", "Student discount", "Recordings out",
                  "Call for papers", "Team tickets"]  # fmt: skip
AUDIENCES = ["", "data engineers", "students", "CTOs", "designers", "marketers", "founders",
             "site reliability engineers", "product managers", "researchers"]  # fmt: skip


def organizer_sizes() -> list[int]:
    weights = np.array([1 / (rank + 1) ** ZIPF for rank in range(ORGANIZERS)])
    sizes = np.maximum(1, np.floor(weights / weights.sum() * MEMORIES)).astype(int)
    sizes[0] += MEMORIES - sizes.sum()
    return [int(size) for size in sizes]


def moment(rng: random.Random) -> str:
    event = Event(name=f"{rng.choice(SERIES)} {rng.choice(CITIES)}")
    subject = rng.choice(SUBJECTS)
    session = LiveSession(
        event=event,
        title=rng.choice(FORMATS).format(s=subject),
        topic=rng.choice(TOPICS),
        started_at=timezone.now(),
    )
    present = rng.choice([8, 25, 40, 120, 300, 900])
    rates = {kind: rng.choice([0.0, 0.5, 2.0, 12.0, 60.0]) for kind in rng.sample(KINDS, 3)}
    sample = EngagementSample(
        session=session, at=session.started_at + timedelta(minutes=rng.uniform(0, 80)),
        score=0.2, band=rng.choice(BANDS), present=present, rates=rates,
    )  # fmt: skip
    return moments.situation(session=session, sample=sample, anomaly_type=rng.choice(ANOMALIES))


def campaign_situation(rng: random.Random) -> str:
    return campaign.situation(
        name=rng.choice(CAMPAIGN_NAMES),
        event_name=f"{rng.choice(SERIES)} {rng.choice(CITIES)}",
        audience=rng.choice(AUDIENCES),
    )


def generate(rng: random.Random) -> tuple[str, str]:
    if rng.random() < CAMPAIGN_SHARE:
        return campaign.MEMORY_AGENT, campaign_situation(rng)
    return moments.AGENT, moment(rng)


def indexes_of_memory() -> list[Any]:
    return [i for i in MemoryItem._meta.indexes if i.name.startswith("memory_embedding_hnsw")]


def load(organizer_ids: list[int], sizes: list[int]) -> tuple[float, float]:
    """Write the memories with COPY and build the indexes as the migration defines them; return
    (seconds to embed, seconds to build the indexes)."""
    rng = random.Random(SEED)
    rows = [
        (organizer_id, *generate(rng))
        for organizer_id, size in zip(organizer_ids, sizes, strict=True)
        for _ in range(size)
    ]
    # In the order they would be learned: organizers' memories interleaved in the table, as
    # weeks of everyone's sessions leave them (not each organizer's rows side by side, which
    # would flatter the exact scan).
    rng.shuffle(rows)
    started = time.perf_counter()
    model = memory.embedder()
    vectors = memory.embed_many([situation for _, _, situation in rows], model)
    embed_seconds = time.perf_counter() - started
    indexes = indexes_of_memory()
    now = timezone.now()
    with connection.cursor() as cursor:
        for index in indexes:
            cursor.execute(f"DROP INDEX IF EXISTS {index.name}")
        with cursor.cursor.copy(
            f"COPY {MemoryItem._meta.db_table} (organizer_id, agent, key, content, embedding, "
            "embedding_model, embedding_dimensions, reward, metadata, created_at) FROM STDIN"
        ) as copy:
            for n, ((organizer_id, agent, situation), vector) in enumerate(
                zip(rows, vectors, strict=True)
            ):
                copy.write_row((
                    organizer_id, agent, f"{PREFIX}{n}", f"what was done #{n}",
                    "[" + ",".join(f"{value:.7g}" for value in vector) + "]",
                    model.model, model.dimensions, rng.random() / 10,
                    Jsonb({"situation": situation, "type": "poll", "lift": 0.1}), now,
                ))  # fmt: skip
        cursor.execute("SET maintenance_work_mem = '512MB'")  # the graph is built in memory
        started = time.perf_counter()
        with connection.schema_editor() as editor:
            for index in indexes:
                editor.add_index(MemoryItem, index)
        build_seconds = time.perf_counter() - started
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute(f"VACUUM ANALYZE {MemoryItem._meta.db_table}")
    return embed_seconds, build_seconds


EXACT = (
    "WITH theirs AS MATERIALIZED (SELECT embedding FROM agents_memoryitem"
    " WHERE organizer_id = %s AND agent = %s AND embedding_model = %s)"
    " SELECT embedding <=> %s::halfvec AS d FROM theirs ORDER BY d LIMIT %s"
)


def exact(organizer_id: int, agent: str, vector: str, model: str) -> list[float]:
    """The K nearest distances, every one of the organizer's rows compared (the baseline)."""
    with connection.cursor() as cursor:
        cursor.execute(EXACT, [organizer_id, agent, model, vector, K])
        return [row[0] for row in cursor.fetchall()]


def indexed(organizer_id: int, agent: str, vector: list[float], model: str) -> list[float]:
    sql, params = memory.recall_query(
        organizer_ids=[organizer_id], agent=agent, vector=vector, model=model, limit=K
    )
    with transaction.atomic():
        memory.scan_settings()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            names = [column.name for column in cursor.description]
            at = names.index("distance")
            return [row[at] for row in cursor.fetchall()]


def plan_of(sql: str, params: list[Any], scan: bool) -> tuple[bool, int]:
    """Whether the statement walks an HNSW index, and the pages it reads (in cache or not): the
    work, which unlike time does not depend on what else the machine is doing."""
    with transaction.atomic(), connection.cursor() as cursor:
        if scan:
            memory.scan_settings()
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0][0]
    pages = plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]
    return "memory_embedding_hnsw" in json.dumps(plan), pages


def found(approximate: list[float], truth: list[float]) -> tuple[int, int]:
    if not truth:
        return 0, 0
    bar = truth[-1] + 1e-6
    return min(len(truth), sum(1 for d in approximate if d <= bar)), len(truth)


def percentile(values: list[float], share: float) -> float:
    return float(np.percentile(values, share * 100))


def queries(seed: int, organizers: list[int], sizes: list[int]) -> list[tuple[int, str, str]]:
    rng = random.Random(seed)
    drawn = []
    for _ in range(QUERIES):
        position = rng.choices(range(ORGANIZERS), weights=sizes)[0]
        agent, situation = generate(rng)
        drawn.append((organizers[position], agent, situation))
    return drawn


@dataclass
class Measured:
    held: int  # memories of the organizer and agent asked about
    hnsw: bool
    pages: int
    statement_ms: float
    recall_ms: float
    answer: list[float]
    exact_ms: float = 0.0
    exact_pages: int = 0


SIZES = ((0, 500), (500, 2_000), (2_000, 5_000), (5_000, 20_000))


def main() -> None:
    call_command("migrate", verbosity=0)
    users = get_user_model()
    organizers = [
        users.objects.get_or_create(username=f"{PREFIX}{n}")[0].pk for n in range(ORGANIZERS)
    ]
    MemoryItem.objects.filter(organizer_id__in=organizers).delete()
    sizes = organizer_sizes()
    embed_seconds, build_seconds = load(organizers, sizes)
    model = memory.embedder().model
    print(f"{MEMORIES} memories of {ORGANIZERS} organizers (largest {sizes[0]}, smallest "
          f"{sizes[-1]}); embedded by {model} in {embed_seconds:.1f} s "
          f"({MEMORIES / embed_seconds:,.0f}/s); {len(indexes_of_memory())} HNSW indexes built in "
          f"{build_seconds:.1f} s")  # fmt: skip
    held = {
        (row["organizer_id"], row["agent"]): row["rows"]
        for row in MemoryItem.objects.filter(organizer_id__in=organizers)
        .values("organizer_id", "agent")
        .annotate(rows=Count("pk"))
    }

    # Steady state: the index and the rows recall leads to are in cache, as they are for a
    # service that recalls all day - warmed by other queries than the ones measured.
    warm = queries(SEED + 2, organizers, sizes)
    for (organizer_id, agent, _), vector in zip(warm, memory.embed_many([q[2] for q in warm]),
                                                strict=True):  # fmt: skip
        indexed(organizer_id, agent, list(vector), model)

    # Each way in its own pass: the exact scan of a big organizer reads all of its rows, which
    # would push the index out of the cache between two recalls and slow them for nothing.
    measured = queries(SEED + 1, organizers, sizes)
    vectors = memory.embed_many([situation for _, _, situation in measured])
    results = []
    for (organizer_id, agent, situation), vector in zip(measured, vectors, strict=True):
        sql, params = memory.recall_query(
            organizer_ids=[organizer_id], agent=agent, vector=vector, model=model, limit=K
        )
        started = time.perf_counter()
        answer = indexed(organizer_id, agent, list(vector), model)
        statement_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        memory.recall(organizer_ids=[organizer_id], agent=agent, situation=situation, limit=K)
        recall_ms = (time.perf_counter() - started) * 1000
        hnsw, pages = plan_of(sql, params, scan=True)
        results.append(
            Measured(held[organizer_id, agent], hnsw, pages, statement_ms, recall_ms, answer)
        )
    hits = total = 0
    for result, (organizer_id, agent, _), vector in zip(results, measured, vectors, strict=True):
        literal = memory._vector_literal(vector)
        started = time.perf_counter()
        truth = exact(organizer_id, agent, literal, model)
        result.exact_ms = (time.perf_counter() - started) * 1000
        result.exact_pages = plan_of(EXACT, [organizer_id, agent, model, literal, K], False)[1]
        got, wanted = found(result.answer, truth)
        hits, total = hits + got, total + wanted

    recall_at_k = hits / total
    verdict = "met" if recall_at_k >= 0.98 else "NOT met"
    print(f"recall@{K} against exact:        {recall_at_k:8.4f}   (goal >= 0.98: {verdict})")
    for name, values in (
        ("exact scan (baseline)", [r.exact_ms for r in results]),
        ("recall statement", [r.statement_ms for r in results]),
        ("agents.memory.recall", [r.recall_ms for r in results]),
    ):
        print(f"{name:30s} p50 {percentile(values, 0.5):6.2f} ms  p95 "
              f"{percentile(values, 0.95):6.2f} ms")  # fmt: skip
    p95 = percentile([r.recall_ms for r in results], 0.95)
    verdict = "met" if p95 < 5 else "NOT met"
    print(f"recall p95:                     {p95:8.2f} ms (goal < 5 ms: {verdict}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")  # fmt: skip
    exact_pages = [r.exact_pages for r in results]
    pages = [r.pages for r in results]
    print(f"pages read, exact scan:         p50 {percentile(exact_pages, 0.5):6.0f}     p95 "
          f"{percentile(exact_pages, 0.95):6.0f}")  # fmt: skip
    print(f"pages read, recall statement:   p50 {percentile(pages, 0.5):6.0f}     p95 "
          f"{percentile(pages, 0.95):6.0f}   (p95 ratio exact / recall "
          f"{percentile(exact_pages, 0.95) / percentile(pages, 0.95):.1f}x)")  # fmt: skip
    print("memories of the organizer and agent: queries  HNSW plans  p95 pages exact / recall"
          "  p95 ms exact / recall")  # fmt: skip
    for low, high in SIZES:
        part = [r for r in results if low <= r.held < high]
        if part:
            print(f"  {low:>6,} to {high:>6,}              {len(part):7d} "
                  f"{sum(r.hnsw for r in part) / len(part):10.0%} "
                  f"{percentile([r.exact_pages for r in part], 0.95):12.0f} / "
                  f"{percentile([r.pages for r in part], 0.95):6.0f} "
                  f"{percentile([r.exact_ms for r in part], 0.95):12.2f} / "
                  f"{percentile([r.recall_ms for r in part], 0.95):6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
