"""Build a realistic PostgreSQL database for the backup benchmark, server-side and deterministically.

Usage: .venv/bin/python bench/generate.py --scale 500 --dbname bench_s500

The data is shaped like a shop: customers (names, e-mails, addresses), products, orders with
jsonb line items and free-text notes, and events with timestamps and varied jsonb payloads.
Text comes from word lists and a table of random phrases, mixed with md5() identifiers, so
that it compresses like real data (about 3-4x), not like blank padding. Rows are made with
generate_series() in SQL; keys, foreign keys and indexes are added after loading, as
pg_restore does (products keeps its key from the start: the orders look their items up by it).
Two connections load and index in parallel (the machine has two cores).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432"
# Bump when the schema or the data changes, so that `--reuse` rebuilds older databases.
GENERATOR_VERSION = 1

# The word lists stay readable text, split once at import.
WORDS = (  # noqa: SIM905
    "able account action active address advance after again agent almost alpha amber answer apple "
    "april area arrive autumn balance basket battery beach before begin below berry better bicycle "
    "black blanket blue border bottle bright broken brown bucket budget cable camera candle carbon "
    "carpet castle center chair change charge cheap cherry circle classic clean clock cloud coffee "
    "color comfort copper corner cotton country cover credit crystal custom daily damage delivery "
    "desert design detail device diamond dinner direct double dragon drawer dream early eastern "
    "easy echo edge electric empty energy engine evening exact express fabric family fast feather "
    "field final finger flower forest formal frame fresh friday garden gentle giant glass global "
    "golden gravel green guitar hammer handle happy harbor heavy helmet hidden holiday honey "
    "invoice island jacket jungle kettle kitchen ladder lamp large leather lemon letter light "
    "linen liquid little local lucky marble market meadow medium metal middle mirror modern "
    "monday morning mountain narrow native needle night noble north number ocean office orange "
    "order package paper parcel pencil pepper perfect pillow planet plastic pocket polish "
    "portable purple quick quiet radio rapid refund repair return river rocket royal rubber "
    "saddle safety silver simple single slow small smart soft solid spare spring square steel "
    "stone storm strong summer sunday table thunder tiny today tomato travel tuesday urban "
    "velvet village violet warm water weekly white window winter wooden yellow zinc"
).split()
FIRST_NAMES = (  # noqa: SIM905
    "Ada Alan Alice Amara Anna Arjun Ben Bruno Carla Chen Chloe Daniel David Elena Emma Eva "
    "Fatima Felix Grace Hana Hugo Ines Ivan Jack James Julia Kenji Lara Leo Lena Liam Lucas Maria "
    "Marta Mia Mohamed Nadia Noah Olga Omar Paul Priya Rosa Sara Sofia Tom Yara Yusuf Zoe"
).split()
LAST_NAMES = (  # noqa: SIM905
    "Adams Ali Bauer Becker Brown Carter Chen Costa Dubois Evans Fischer Garcia Gomez Hansen Ito "
    "Jensen Khan Kim Kowalski Lambert Lee Lopez Martin Meyer Moreau Muller Nguyen Novak Okafor "
    "Olsen Patel Perez Petrov Rossi Santos Schmidt Silva Smith Suzuki Tanaka Taylor Weber Wilson "
    "Wong Yilmaz Zhang"
).split()
CITIES = (  # noqa: SIM905
    "Amsterdam Athens Austin Barcelona Berlin Boston Brno Chicago Dublin Gdansk Geneva Hamburg "
    "Helsinki Krakow Leeds Lisbon Lyon Madrid Milan Montreal Munich Nantes Oslo Porto Prague "
    "Seattle Seville Tallinn Toronto Turin Utrecht Valencia Vienna Warsaw Zurich"
).split()
COUNTRIES = "AT BE CA CH CZ DE DK ES FI FR GB IE IT NL NO PL PT SE US".split()  # noqa: SIM905
STREET_KINDS = "Street Road Avenue Lane Way Square Place Boulevard".split()  # noqa: SIM905
ORDER_STATUSES = "new paid packed shipped delivered delivered delivered cancelled refunded".split()  # noqa: SIM905
EVENT_KINDS = "page_view page_view page_view search cart_add cart_remove login checkout review".split()  # noqa: SIM905
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36",
)

# Approximate on-disk bytes per row (heap and TOAST), measured on PostgreSQL 15, and the share
# of the table data that each table takes.
ROW_BYTES = {"customers": 155, "orders": 590, "events": 280}
SHARES = {"customers": 0.10, "orders": 0.45, "events": 0.45}
PHRASES = 20_000


@dataclass(frozen=True)
class Plan:
    """Row counts for one scale."""

    customers: int
    products: int
    orders: int
    events: int

    @classmethod
    def for_scale(cls, scale_mb: float) -> Plan:
        """Return the row counts that make about `scale_mb` MB of table data."""
        total = scale_mb * 1024 * 1024
        rows = {name: max(100, int(total * SHARES[name] / ROW_BYTES[name])) for name in SHARES}
        return cls(products=min(10_000, max(100, rows["customers"] // 20)), **rows)


def database_url(server_url: str, dbname: str) -> str:
    """Return `server_url` pointed at database `dbname`."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))


def _array(values: list[str] | tuple[str, ...]) -> sql.Composable:
    return sql.SQL("{}::text[]").format(sql.Literal(list(values)))


def _pick(values: list[str] | tuple[str, ...], index: str) -> sql.Composable:
    """Return SQL choosing one of `values` by the integer expression `index` (any range)."""
    return sql.SQL("({arr})[1 + abs({index}) % {n}]").format(
        arr=_array(values), index=sql.SQL(index), n=sql.Literal(len(values))
    )


def _words(count: int) -> sql.Composable:
    """Return SQL for `count` random words joined by spaces."""
    picks = [_pick(WORDS, "(random() * 100000)::int") for _ in range(count)]
    return sql.SQL(" || ' ' || ").join(picks)


SCHEMA = """
CREATE TABLE bench_meta (scale_mb real NOT NULL, version int NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE customers (
    id bigint NOT NULL, first_name text NOT NULL, last_name text NOT NULL, email text NOT NULL,
    phone text, street text, city text, postal_code text, country char(2),
    created_at timestamptz NOT NULL, is_active boolean NOT NULL, loyalty_points integer NOT NULL);
CREATE TABLE products (
    id integer PRIMARY KEY, sku text NOT NULL, name text NOT NULL, description text NOT NULL,
    price numeric(10, 2) NOT NULL, tags text[] NOT NULL);
CREATE TABLE orders (
    id bigint NOT NULL, customer_id bigint NOT NULL, status text NOT NULL,
    placed_at timestamptz NOT NULL, total numeric(12, 2) NOT NULL, currency char(3) NOT NULL,
    items jsonb NOT NULL, shipping_address text NOT NULL, tracking_number text, note text);
CREATE TABLE events (
    id bigint NOT NULL, customer_id bigint NOT NULL, order_id bigint, kind text NOT NULL,
    occurred_at timestamptz NOT NULL, client_ip inet, user_agent text, payload jsonb NOT NULL);
-- Random phrases for the free-text columns; dropped once the tables are loaded.
CREATE TABLE phrases (id integer PRIMARY KEY, body text NOT NULL);
"""


def _customers_sql(plan: Plan) -> sql.Composable:
    return sql.SQL("""
INSERT INTO customers
SELECT g, f.name, l.name,
       lower(f.name) || '.' || lower(l.name) || '.' || substr(md5(g::text), 1, 6) || '@'
           || {domain} || '.example',
       '+' || (10 + g % 89) || ' ' || lpad(((random() * 999999999)::bigint)::text, 9, '0'),
       (1 + (random() * 250)::int) || ' ' || initcap({street_word}) || ' ' || {street_kind},
       {city}, lpad(((random() * 99999)::int)::text, 5, '0'), {country},
       timestamptz '2018-01-01' + random() * interval '2300 days',
       random() < 0.9, (random() * random() * 5000)::int
FROM generate_series(1::bigint, {n}) g
CROSS JOIN LATERAL (SELECT {first} AS name) f
CROSS JOIN LATERAL (SELECT {last} AS name) l
""").format(
        n=sql.Literal(plan.customers),
        first=_pick(FIRST_NAMES, "(random() * 1000)::int + g * 0"),
        last=_pick(LAST_NAMES, "(random() * 1000)::int + g * 0"),
        domain=_pick(WORDS, "(random() * 1000)::int"),
        street_word=_pick(WORDS, "(random() * 1000)::int"),
        street_kind=_pick(STREET_KINDS, "(random() * 1000)::int"),
        city=_pick(CITIES, "(random() * 1000)::int"),
        country=_pick(COUNTRIES, "(random() * 1000)::int"),
    )


def _products_sql(plan: Plan) -> sql.Composable:
    return sql.SQL("""
INSERT INTO products
SELECT g, upper(substr(md5('sku' || g), 1, 4)) || '-' || lpad(g::text, 6, '0'),
       initcap({name}), {description},
       round((1 + random() * random() * 400)::numeric, 2),
       ARRAY[{tag1}, {tag2}]
FROM generate_series(1::bigint, {n}) g
""").format(
        n=sql.Literal(plan.products),
        name=_words(2),
        description=_words(14),
        tag1=_pick(WORDS, "(random() * 1000)::int + g"),
        tag2=_pick(WORDS, "(random() * 1000)::int + g * 3"),
    )


def _phrases_sql() -> sql.Composable:
    # The correlated reference to g makes PostgreSQL draw new words for every phrase.
    return sql.SQL("""
INSERT INTO phrases
SELECT g, (SELECT string_agg({word}, ' ') FROM generate_series(1, 4 + g % 9) k)
FROM generate_series(0, {n} - 1) g
""").format(n=sql.Literal(PHRASES), word=_pick(WORDS, "(random() * 100000)::int + k * g"))


def _orders_sql(plan: Plan) -> sql.Composable:
    return sql.SQL("""
INSERT INTO orders
SELECT g, c.id, {status}, c.created_at + random() * interval '900 days',
       li.total, (ARRAY['EUR', 'EUR', 'USD', 'GBP'])[1 + g % 4], li.items,
       c.street || E'\\n' || c.postal_code || ' ' || c.city || E'\\n' || c.country,
       CASE WHEN g % 5 < 3 THEN 'TRK' || upper(substr(md5('trk' || g), 1, 16)) END,
       CASE WHEN g % 3 = 0 THEN NULL
            WHEN g % 3 = 1 THEN p1.body || '.'
            ELSE p1.body || '. ' || initcap(p2.body) || ', order ' || g || '.' END
FROM generate_series(1::bigint, {n}) g
JOIN customers c ON c.id = 1 + (g * 7919) % {customers}
JOIN phrases p1 ON p1.id = (g * 104729) % {phrases}
JOIN phrases p2 ON p2.id = (g * 15485863) % {phrases}
CROSS JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_object(
               'sku', p.sku, 'name', p.name, 'quantity', 1 + (g + k) % 4,
               'unit_price', p.price, 'gift_wrap', (g + k) % 11 = 0)) AS items,
           sum(p.price * (1 + (g + k) % 4)) AS total
    FROM generate_series(1, 1 + g % 5) k
    JOIN products p ON p.id = 1 + (g * 31 + k * 977) % {products}
) li
""").format(
        n=sql.Literal(plan.orders),
        customers=sql.Literal(plan.customers),
        products=sql.Literal(plan.products),
        phrases=sql.Literal(PHRASES),
        status=_pick(ORDER_STATUSES, "(random() * 1000)::int"),
    )


def _events_sql(plan: Plan) -> sql.Composable:
    return sql.SQL("""
INSERT INTO events
SELECT g, e.customer_id, CASE WHEN e.kind = 'checkout' THEN 1 + (g * 7) % {orders} END, e.kind,
       timestamptz '2018-01-01' + (g::float8 / {n}) * interval '2400 days'
           + random() * interval '3 hours',
       ('10.' || (g % 256) || '.' || ((g / 256) % 256) || '.' || (random() * 255)::int)::inet,
       {agent},
       jsonb_strip_nulls(CASE e.kind
         WHEN 'page_view' THEN jsonb_build_object(
             'path', '/' || {w1} || '/' || {w2} || '-' || (g % 5000),
             'referrer', CASE WHEN g % 4 = 0 THEN 'https://' || {w3} || '.example/' END,
             'duration_ms', (random() * 30000)::int, 'scroll', round(random()::numeric, 2))
         WHEN 'search' THEN jsonb_build_object(
             'query', {w1} || ' ' || {w2}, 'results', (random() * 200)::int,
             'filters', jsonb_build_object('color', {w3}, 'max_price', (random() * 500)::int))
         WHEN 'review' THEN jsonb_build_object(
             'rating', 1 + g % 5, 'title', initcap({w1} || ' ' || {w2}), 'body', p.body,
             'verified', g % 3 > 0)
         WHEN 'login' THEN jsonb_build_object(
             'method', (ARRAY['password', 'sso', 'magic_link'])[1 + g % 3], 'success', g % 17 > 0,
             'session', md5('session' || g))
         ELSE jsonb_build_object(
             'product_id', 1 + (g * 13) % {products}, 'quantity', 1 + g % 3,
             'cart', md5('cart' || (g / 7)), 'note', CASE WHEN g % 6 = 0 THEN p.body END)
       END)
FROM generate_series(1::bigint, {n}) g
JOIN phrases p ON p.id = (g * 7907) % {phrases}
CROSS JOIN LATERAL (SELECT 1 + (g * 6007 + (random() * 5)::int) % {customers} AS customer_id,
                           {kind} AS kind) e
""").format(
        n=sql.Literal(plan.events),
        orders=sql.Literal(plan.orders),
        customers=sql.Literal(plan.customers),
        products=sql.Literal(plan.products),
        phrases=sql.Literal(PHRASES),
        kind=_pick(EVENT_KINDS, "(random() * 1000)::int + g * 0"),
        agent=_pick(USER_AGENTS, "(random() * 1000)::int"),
        w1=_pick(WORDS, "(random() * 100000)::int"),
        w2=_pick(WORDS, "(random() * 100000)::int"),
        w3=_pick(WORDS, "(random() * 100000)::int"),
    )


# Each step is a list of jobs; the jobs of one step run in parallel on separate connections.
KEYS_AND_INDEXES = [
    [
        "ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id)",
        "ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id)",
        (
            "ALTER TABLE customers ADD CONSTRAINT customers_pkey PRIMARY KEY (id);"
            "ALTER TABLE products ADD CONSTRAINT products_sku_key UNIQUE (sku);"
            "ALTER TABLE customers ADD CONSTRAINT customers_email_key UNIQUE (email);"
            "CREATE INDEX customers_last_name_idx ON customers (lower(last_name), first_name);"
            "CREATE INDEX products_tags_idx ON products USING gin (tags)"
        ),
    ],
    [
        (
            "CREATE INDEX orders_customer_placed_idx ON orders (customer_id, placed_at);"
            "CREATE INDEX orders_status_idx ON orders (status) WHERE status IN ('new', 'paid')"
        ),
        (
            "CREATE INDEX events_occurred_idx ON events (occurred_at);"
            "CREATE INDEX events_customer_kind_idx ON events (customer_id, kind)"
        ),
    ],
    # Foreign keys lock both of their tables: adding them in parallel would deadlock.
    [
        (
            "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id);"
            "ALTER TABLE events ADD CONSTRAINT events_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id);"
            "ALTER TABLE events ADD CONSTRAINT events_order_fk FOREIGN KEY (order_id) REFERENCES orders (id)"
        ),
    ],
]


@contextmanager
def connect(url: str, *, autocommit: bool = False) -> Iterator[psycopg2.extensions.cursor]:
    """Yield a cursor on `url`; commit on success and always close the connection."""
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = autocommit
        with conn.cursor() as cur:
            yield cur
        if not autocommit:
            conn.commit()
    finally:
        conn.close()


def _run_parallel(url: str, jobs: list[sql.Composable | str], seed: float) -> None:
    """Run each job in its own connection and thread; re-raise the first failure."""
    errors: list[BaseException] = []

    def work(index: int, statement: sql.Composable | str) -> None:
        try:
            with connect(url) as cur:
                cur.execute("SELECT setseed(%s)", [seed + index / 100])
                cur.execute(statement)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def admin_execute(url: str, statement: sql.Composable | str) -> None:
    """Run one statement outside a transaction (CREATE DATABASE, VACUUM) on database `url`."""
    with connect(url, autocommit=True) as cur:
        cur.execute(statement)


def drop_database(server_url: str, dbname: str) -> None:
    """Drop database `dbname` if it exists, closing its sessions."""
    admin_execute(database_url(server_url, "postgres"), sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def create_empty_database(server_url: str, dbname: str) -> None:
    """(Re)create `dbname` as an empty database from template0."""
    drop_database(server_url, dbname)
    admin_execute(database_url(server_url, "postgres"), sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(dbname)))


def existing_scale(server_url: str, dbname: str) -> float | None:
    """Return the scale that `dbname` was generated with by this generator version, or None."""
    try:
        conn = psycopg2.connect(database_url(server_url, dbname))
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('bench_meta') IS NOT NULL")
            if not cur.fetchone()[0]:
                return None
            cur.execute("SELECT scale_mb FROM bench_meta WHERE version = %s", [GENERATOR_VERSION])
            row = cur.fetchone()
            return float(row[0]) if row else None
    finally:
        conn.close()


def describe(server_url: str, dbname: str) -> dict:
    """Return the database's size, table-data size and row counts."""
    with connect(database_url(server_url, dbname)) as cur:
        cur.execute(
            "SELECT pg_database_size(current_database()),"
            " (SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            "  WHERE c.relkind = 'r' AND n.nspname = 'public')"
        )
        database_bytes, table_bytes = cur.fetchone()
        counts = {}
        for table in ("customers", "products", "orders", "events"):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            counts[table] = cur.fetchone()[0]
    return {"database_bytes": int(database_bytes), "table_bytes": int(table_bytes or 0), "rows": counts}


def generate(*, server_url: str, dbname: str, scale_mb: float, seed: float = 0.42) -> dict:
    """Create database `dbname` with about `scale_mb` MB of table data and return its description."""
    plan = Plan.for_scale(scale_mb)
    url = database_url(server_url, dbname)
    create_empty_database(server_url, dbname)
    started = time.monotonic()
    with connect(url) as cur:
        cur.execute("SELECT setseed(%s)", [seed])
        cur.execute(SCHEMA)
        for statement in (_products_sql(plan), _phrases_sql(), _customers_sql(plan)):
            cur.execute(statement)
    _run_parallel(url, [_orders_sql(plan), _events_sql(plan)], seed)
    for step in KEYS_AND_INDEXES:
        _run_parallel(url, step, seed)
    with connect(url) as cur:
        cur.execute("DROP TABLE phrases")
        cur.execute("INSERT INTO bench_meta VALUES (%s, %s, now())", [scale_mb, GENERATOR_VERSION])
    admin_execute(url, "VACUUM ANALYZE")
    return {**describe(server_url, dbname), "plan": plan.__dict__, "seconds": time.monotonic() - started}


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and build the database."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, required=True, help="approximate MB of table data")
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server, without database")
    parser.add_argument("--seed", type=float, default=0.42, help="setseed() value, in [-1, 1]")
    args = parser.parse_args(argv)
    info = generate(server_url=args.server_url, dbname=args.dbname, scale_mb=args.scale, seed=args.seed)
    print(f"{args.dbname}: {info['table_bytes'] / 2**20:.0f} MB of table data, "
          f"{info['database_bytes'] / 2**20:.0f} MB database, rows {info['rows']}, "
          f"built in {info['seconds']:.1f} s")


if __name__ == "__main__":
    main()
