// Datasets and workloads. pgbench's own tables compress about 20x (the filler column is blanks), which
// flatters every tool, so there is also a dataset of realistic entropy: documents (text of words drawn
// from a Zipf-distributed vocabulary, JSON attributes with ids, hashes, numbers and timestamps) and a
// time series of measurements, generated from a seeded PRNG so every run loads the same bytes.
import { join } from 'node:path';
import { PG_BIN } from './cluster.js';
import { run, start, writeServerFile } from './proc.js';

/** Rows of the realistic dataset per unit of SCALE (about 13 MB per unit, like pgbench's 15 MB). */
export const DOCS_PER_SCALE = 5000;
export const EVENTS_PER_SCALE = 40000;

/** mulberry32: small, fast, seeded. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SYLLABLES = ('ba be bi bo bu ca ce co cu da de di do du fa fe fi fo ga ge go gu ha he hi ho ja jo ka ke ki ko la le li lo lu ' +
  'ma me mi mo mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo za ze zo ' +
  'an en in on un ar er ir or ur al el il ol ul as es is os us at et it ot st tr pl gr ch sh th qu').split(' ');

/** A seeded generator of realistic rows. */
export class RealisticData {
  constructor(seed) {
    this.random = prng(seed);
    const r = this.random;
    this.vocabulary = Array.from({ length: 8000 }, () => {
      const n = 1 + Math.floor(r() * 3.2);
      let word = '';
      for (let i = 0; i < n; i++) word += SYLLABLES[Math.floor(r() * SYLLABLES.length)];
      return word;
    });
    // Zipf (s = 1.07) over the vocabulary, as word frequencies in natural text.
    const weights = this.vocabulary.map((_, i) => 1 / Math.pow(i + 1, 1.07));
    const total = weights.reduce((a, b) => a + b, 0);
    let acc = 0;
    this.cdf = Float64Array.from(weights, (w) => (acc += w / total));
    this.authors = Array.from({ length: 3000 }, () => `${this.capital(this.vocabulary[this.int(8000)])} ${this.capital(this.vocabulary[this.int(8000)])}`);
  }

  int(n) {
    return Math.floor(this.random() * n);
  }

  word() {
    const x = this.random();
    let lo = 0;
    let hi = this.cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.cdf[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return this.vocabulary[lo];
  }

  capital(word) {
    return word[0].toUpperCase() + word.slice(1);
  }

  sentence() {
    const n = 4 + this.int(18);
    const words = [this.capital(this.word())];
    for (let i = 1; i < n; i++) {
      const x = this.random();
      if (x < 0.03) words.push(String(this.int(10000)));
      else if (x < 0.08) words.push(this.word() + ',');
      else words.push(this.word());
    }
    return words.join(' ') + (this.random() < 0.9 ? '.' : '?');
  }

  hex(chars) {
    let s = '';
    while (s.length < chars) s += Math.floor(this.random() * 0x100000000).toString(16).padStart(8, '0');
    return s.slice(0, chars);
  }

  uuid() {
    const h = this.hex(32);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  /** One row of `docs` in COPY text format (no tabs, newlines or backslashes in any field). */
  doc(id, createdMs) {
    const sentences = 3 + this.int(12);
    const body = Array.from({ length: sentences }, () => this.sentence()).join(' ');
    const title = Array.from({ length: 3 + this.int(6) }, () => this.word()).join(' ');
    const author = this.authors[this.int(this.authors.length)];
    const attrs = {
      uuid: this.uuid(),
      user: { id: 100000 + this.int(900000), name: author, email: `${author.split(' ')[0].toLowerCase()}${this.int(1000)}@example.${['com', 'org', 'net', 'io'][this.int(4)]}` },
      status: ['draft', 'published', 'archived', 'review'][this.int(4)],
      tags: Array.from({ length: this.int(5) }, () => this.word()),
      score: Math.round(this.random() * 1e6) / 1e4,
      views: this.int(100000),
      geo: { lat: Math.round((this.random() * 180 - 90) * 1e5) / 1e5, lon: Math.round((this.random() * 360 - 180) * 1e5) / 1e5 },
      ...(this.random() < 0.4 ? { revision: this.hex(40) } : {}),
      updated: new Date(createdMs + this.int(86_400_000 * 30)).toISOString(),
    };
    return `${id}\t${new Date(createdMs).toISOString()}\t${author}\t${this.capital(title)}\t${body}\t${JSON.stringify(attrs)}\n`;
  }

  /** One row of `events` in COPY text format. */
  event(tsMs) {
    const device = 1 + this.int(5000);
    const metric = METRICS[this.int(METRICS.length)];
    const value = Math.round(this.random() * 1e6) / 1e3;
    const labels = { region: REGIONS[device % REGIONS.length], host: `host-${device % 700}`, version: `1.${device % 9}.${this.int(20)}`, trace: this.hex(16) };
    return `${new Date(tsMs).toISOString()}\t${device}\t${metric}\t${value}\t${JSON.stringify(labels)}\n`;
  }
}

const METRICS = ['cpu.user', 'cpu.system', 'mem.used', 'mem.free', 'disk.read', 'disk.write', 'net.rx', 'net.tx', 'http.requests', 'http.errors', 'http.latency.p50', 'http.latency.p99', 'queue.depth', 'gc.pause', 'temp'];
const REGIONS = ['eu-west-1', 'eu-central-1', 'us-east-1', 'us-west-2', 'ap-south-1', 'ap-northeast-1'];

const BASE_TIME = Date.UTC(2025, 0, 1);

/** COPY text for `count` docs with ids from `firstId`, in 1 MB chunks. */
async function* docsCopy(data, firstId, count) {
  let chunk = '';
  for (let i = 0; i < count; i++) {
    const id = firstId + i;
    chunk += data.doc(id, BASE_TIME + id * 60_000);
    if (chunk.length > 1 << 20) {
      yield chunk;
      chunk = '';
    }
  }
  yield chunk;
}

async function* eventsCopy(data, firstMs, count) {
  let chunk = '';
  for (let i = 0; i < count; i++) {
    chunk += data.event(firstMs + i * 50);
    if (chunk.length > 1 << 20) {
      yield chunk;
      chunk = '';
    }
  }
  yield chunk;
}

export const REALISTIC_SCHEMA = `
CREATE TABLE docs (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, author text NOT NULL, title text NOT NULL, body text NOT NULL, attrs jsonb NOT NULL);
CREATE TABLE events (ts timestamptz NOT NULL, device_id int NOT NULL, metric text NOT NULL, value double precision NOT NULL, labels jsonb NOT NULL);
`;

/** Loads the realistic dataset (docs + events, indexes built after the load, then VACUUM ANALYZE). */
export async function loadRealistic(cluster, scale, seed = 42) {
  await cluster.psql(['-c', REALISTIC_SCHEMA]);
  const data = new RealisticData(seed);
  await cluster.psql(['-c', 'COPY docs FROM STDIN'], { input: docsCopy(data, 1, scale * DOCS_PER_SCALE) });
  await cluster.psql(['-c', 'COPY events FROM STDIN'], { input: eventsCopy(data, BASE_TIME, scale * EVENTS_PER_SCALE) });
  await cluster.psql(['-c', 'CREATE INDEX events_ts ON events (ts)', '-c', 'CREATE INDEX events_device ON events (device_id, ts)', '-c', 'VACUUM ANALYZE']);
}

/** More docs (appended ids after the current maximum), from a generator seeded by `seed`. */
export async function appendDocs(cluster, count, seed) {
  const [{ max }] = await cluster.query('SELECT coalesce(max(id), 0)::bigint AS max FROM docs');
  await cluster.psql(['-c', 'COPY docs FROM STDIN'], { input: docsCopy(new RealisticData(seed), Number(max) + 1, count) });
}

export async function appendEvents(cluster, count, seed) {
  const [{ ms }] = await cluster.query('SELECT (extract(epoch FROM max(ts)) * 1000)::bigint AS ms FROM events');
  await cluster.psql(['-c', 'COPY events FROM STDIN'], { input: eventsCopy(new RealisticData(seed), Number(ms) + 50, count) });
}

export async function loadPgbench(cluster, scale) {
  await run(join(PG_BIN, 'pgbench'), ['-i', '-q', '-s', String(scale)], { asServer: true, env: cluster.env });
  await cluster.psql(['-c', 'VACUUM ANALYZE']);
}

/** Workload scripts, written where the server OS user can read them. */
export function workloadScripts(dir, scale) {
  const accounts = scale * 100000;
  const scripts = {
    // ~1% hot set: updates to the first 1% of accounts, plus appends to pgbench_history.
    hot: join(dir, 'hot.sql'),
    // Append-only time series: batches of 100 measurements at the current time.
    timeseries: join(dir, 'timeseries.sql'),
  };
  writeServerFile(
    scripts.hot,
    `\\set aid random(1, ${Math.max(1, Math.floor(accounts / 100))})
\\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :aid, :delta, CURRENT_TIMESTAMP);
`,
  );
  writeServerFile(
    scripts.timeseries,
    `INSERT INTO events (ts, device_id, metric, value, labels)
SELECT clock_timestamp(), d, (ARRAY['cpu.user','cpu.system','mem.used','disk.read','net.rx','http.latency.p99'])[1 + d % 6],
       round((random() * 1000)::numeric, 3), jsonb_build_object('region', 'eu-west-' || d % 3, 'host', 'host-' || d % 700, 'trace', md5(random()::text))
FROM (SELECT 1 + (random() * 4999)::int AS d FROM generate_series(1, 100)) s;
`,
  );
  return scripts;
}

/**
 * Runs a workload for `seconds` with 2 clients: 'pgbench' (the default TPC-B-like script: random updates
 * over all accounts), 'hot' or 'timeseries'. Returns pgbench's summary line (transactions, tps).
 */
export async function runWorkload(cluster, kind, seconds, scripts) {
  const args = ['-n', '-c', '2', '-j', '2', '-T', String(seconds), '--random-seed=7'];
  if (kind !== 'pgbench') args.push('-f', scripts[kind]);
  const { done } = start(join(PG_BIN, 'pgbench'), args, { asServer: true, env: cluster.env });
  const { stdout } = await done;
  const tx = /number of transactions actually processed: (\d+)/.exec(stdout)?.[1];
  const tps = /tps = ([\d.]+)/.exec(stdout)?.[1];
  return { transactions: Number(tx), tps: Number(tps) };
}

/**
 * About 1% of the pgbench data changed: every account in a contiguous 1% key range updated (a new
 * version of each row, as a day of business would) starting at `fraction` of the key range.
 */
export async function changePgbench(cluster, scale, fraction) {
  const accounts = scale * 100000;
  const n = Math.floor(accounts / 100);
  const first = 1 + Math.floor(fraction * (accounts - n));
  await cluster.query(`UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN ${first} AND ${first + n - 1}`);
}

/**
 * One simulated day on the realistic dataset, about 1% of it changed: 0.5% of the docs updated in a
 * contiguous id range (recent rows are the busy ones; here the range moves with the day), 0.5% new
 * docs, 1% new events.
 */
export async function realisticDay(cluster, scale, day) {
  const [{ max }] = await cluster.query('SELECT max(id)::bigint AS max FROM docs');
  const docs = Number(max);
  const n = Math.max(1, Math.floor((scale * DOCS_PER_SCALE) / 200));
  const first = 1 + ((day * 7919 * n) % Math.max(1, docs - n));
  await cluster.query(
    `UPDATE docs SET attrs = jsonb_set(jsonb_set(attrs, '{views}', to_jsonb((attrs->>'views')::int + 1 + ${day})), '{updated}', to_jsonb(now()::text))
     WHERE id BETWEEN ${first} AND ${first + n - 1}`,
  );
  await appendDocs(cluster, n, 1000 + day);
  await appendEvents(cluster, Math.floor((scale * EVENTS_PER_SCALE) / 100), 2000 + day);
}
