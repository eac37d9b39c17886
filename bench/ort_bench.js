#!/usr/bin/env node
// ONNX Runtime (CPU EP) latency benchmark, the peer that bench/compare.sh runs next to InferBooster.
//
// usage: node bench/ort_bench.js MODEL.onnx [--threads N] [--batch B] [--runs R] [--warmup W]
//                                [--inputs DIR] [--dump-outputs DIR] [--seed S]
// Prints one JSON object: median_ms, p90_ms, throughput (inferences/s = batch / median),
// peak_rss_mb (maxRSS of this process, Node itself included; baseline_rss_mb is maxRSS
// before the session was created, so the runtime's share can be told apart), load_ms.
// --inputs DIR feeds DIR/<input name>.npy; inputs without a file get seeded random data with
// the conventions of `inferbooster run` (floats in [-1, 1), integers in [0, 100), bools 0/1).
'use strict';

const fs = require('fs');
const path = require('path');

function usage(msg) {
    if (msg) process.stderr.write('ort_bench: ' + msg + '\n');
    process.stderr.write('usage: node bench/ort_bench.js MODEL.onnx [--threads N] [--batch B] [--runs R] ' +
        '[--warmup W] [--inputs DIR] [--dump-outputs DIR] [--seed S]\n');
    process.exit(2);
}

function parseArgs(argv) {
    const opts = { model: null, threads: 2, batch: 1, runs: 20, warmup: 3, inputs: null, dump: null, seed: 0 };
    const ints = { '--threads': 'threads', '--batch': 'batch', '--runs': 'runs', '--warmup': 'warmup', '--seed': 'seed' };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a in ints || a === '--inputs' || a === '--dump-outputs') {
            if (i + 1 >= argv.length) usage(a + ' needs a value');
            const v = argv[++i];
            if (a in ints) {
                if (!/^[0-9]+$/.test(v)) usage(a + ' needs a non-negative integer, got ' + JSON.stringify(v));
                opts[ints[a]] = parseInt(v, 10);
            } else if (a === '--inputs') {
                opts.inputs = v;
            } else {
                opts.dump = v;
            }
        } else if (a === '-h' || a === '--help') {
            usage();
        } else if (a.startsWith('-')) {
            usage('unknown option ' + a);
        } else if (opts.model === null) {
            opts.model = a;
        } else {
            usage('more than one model given');
        }
    }
    if (opts.model === null) usage('no model given');
    if (opts.threads < 1 || opts.batch < 1 || opts.runs < 1) usage('--threads, --batch and --runs must be >= 1');
    return opts;
}

// ---- .npy (format 1.0/2.0/3.0, C order, little-endian) --------------------------------

const NPY_TYPES = {
    // descr -> [ort type, TypedArray, element bytes]
    '<f4': ['float32', Float32Array, 4],
    '<f8': ['float64', Float64Array, 8],
    '<i8': ['int64', BigInt64Array, 8],
    '<i4': ['int32', Int32Array, 4],
    '<i2': ['int16', Int16Array, 2],
    '|i1': ['int8', Int8Array, 1],
    '<u8': ['uint64', BigUint64Array, 8],
    '<u4': ['uint32', Uint32Array, 4],
    '<u2': ['uint16', Uint16Array, 2],
    '|u1': ['uint8', Uint8Array, 1],
    '|b1': ['bool', Uint8Array, 1],
};
const ORT_TO_DESCR = {};
for (const [descr, [t]] of Object.entries(NPY_TYPES)) ORT_TO_DESCR[t] = descr;

function readNpy(file) {
    const buf = fs.readFileSync(file);
    const fail = (why) => { throw new Error(file + ': ' + why); };
    if (buf.length < 10 || buf[0] !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') fail('not a .npy file');
    const major = buf[6];
    let hlen, hstart;
    if (major === 1) {
        hlen = buf.readUInt16LE(8);
        hstart = 10;
    } else if (major === 2 || major === 3) {
        if (buf.length < 12) fail('truncated header');
        hlen = buf.readUInt32LE(8);
        hstart = 12;
    } else {
        fail('unsupported .npy version ' + major);
    }
    if (hstart + hlen > buf.length) fail('truncated header');
    const header = buf.toString(major === 3 ? 'utf8' : 'latin1', hstart, hstart + hlen);
    const descr = /'descr'\s*:\s*'([^']*)'/.exec(header);
    const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
    const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
    if (!descr || !fortran || !shape) fail('malformed header ' + JSON.stringify(header));
    if (fortran[1] === 'True') fail('Fortran-order arrays are not supported');
    let d = descr[1];
    if (d === '<b1' || d === '=b1') d = '|b1';
    if (d === '<i1') d = '|i1';
    if (d === '<u1') d = '|u1';
    const info = NPY_TYPES[d];
    if (!info) fail('unsupported dtype ' + descr[1]);
    const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length > 0).map((s) => {
        if (!/^[0-9]+$/.test(s)) fail('bad shape entry ' + JSON.stringify(s));
        return parseInt(s, 10);
    });
    const count = dims.reduce((a, b) => a * b, 1);
    const start = hstart + hlen;
    const bytes = count * info[2];
    if (!Number.isSafeInteger(bytes) || buf.length - start !== bytes) {
        fail('data is ' + (buf.length - start) + ' bytes, shape ' + JSON.stringify(dims) + ' needs ' + bytes);
    }
    // Copy so the TypedArray is aligned whatever the header length was.
    const data = new info[1](count);
    new Uint8Array(data.buffer).set(buf.subarray(start, start + bytes));
    return { type: info[0], dims, data };
}

function writeNpy(file, type, dims, data) {
    const descr = ORT_TO_DESCR[type];
    if (!descr) throw new Error('cannot write output of type ' + type + ' as .npy');
    const shape = dims.length === 1 ? '(' + dims[0] + ',)' : '(' + dims.join(', ') + ')';
    let header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ', }';
    // Pad so magic + lengths + header + newline is a multiple of 64 (the format's alignment).
    const total = Math.ceil((10 + header.length + 1) / 64) * 64;
    header = header + ' '.repeat(total - 10 - header.length - 1) + '\n';
    const pre = Buffer.alloc(10);
    pre[0] = 0x93;
    pre.write('NUMPY', 1, 'latin1');
    pre[6] = 1;
    pre[7] = 0;
    pre.writeUInt16LE(header.length, 8);
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
}

// ---- random inputs ---------------------------------------------------------------------

// xorshift-style generator seeded per input name, so runs are repeatable.
function makeRng(seed, name) {
    let h = 0x811c9dc5 ^ seed;
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
    let s = (h >>> 0) || 1;
    return () => {
        s ^= s << 13; s >>>= 0;
        s ^= s >>> 17;
        s ^= s << 5; s >>>= 0;
        return s / 4294967296;
    };
}

function randomTensor(ort, meta, batch, seed) {
    const dims = meta.shape.map((d, i) => {
        if (typeof d === 'number' && d >= 0) {
            if (i === 0 && d !== batch && batch !== 1) {
                throw new Error('input ' + meta.name + ' has a fixed batch dimension ' + d + ', --batch ' + batch + ' asked');
            }
            return d;
        }
        // Symbolic: the leading dimension is the batch; others default to 1 like `inferbooster run`.
        return i === 0 ? batch : 1;
    });
    const count = dims.reduce((a, b) => a * b, 1);
    const rng = makeRng(seed, meta.name);
    const t = meta.type;
    let data;
    if (t === 'float32' || t === 'float64') {
        data = t === 'float32' ? new Float32Array(count) : new Float64Array(count);
        for (let i = 0; i < count; i++) data[i] = rng() * 2 - 1;
    } else if (t === 'int64' || t === 'uint64') {
        data = t === 'int64' ? new BigInt64Array(count) : new BigUint64Array(count);
        for (let i = 0; i < count; i++) data[i] = BigInt(Math.floor(rng() * 100));
    } else if (t === 'bool') {
        data = new Uint8Array(count);
        for (let i = 0; i < count; i++) data[i] = rng() < 0.5 ? 0 : 1;
    } else {
        const ctor = { int32: Int32Array, int16: Int16Array, int8: Int8Array, uint32: Uint32Array, uint16: Uint16Array, uint8: Uint8Array }[t];
        if (!ctor) throw new Error('input ' + meta.name + ': no random generator for type ' + t + ' (give --inputs)');
        data = new ctor(count);
        for (let i = 0; i < count; i++) data[i] = Math.floor(rng() * 100);
    }
    return new ort.Tensor(t, data, dims);
}

// ---- main ------------------------------------------------------------------------------

function percentile(sorted, q) {
    // Nearest rank: the smallest value with at least q of the samples at or below it.
    const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
    return sorted[idx];
}

function median(sorted) {
    const n = sorted.length;
    return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const baselineRss = process.resourceUsage().maxRSS / 1024;
    let ort;
    try {
        ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));
    } catch (e) {
        process.stderr.write('ort_bench: onnxruntime-node is not installed (run bench/setup_ort.sh): ' + e.message + '\n');
        process.exit(1);
    }
    const t0 = process.hrtime.bigint();
    const session = await ort.InferenceSession.create(opts.model, {
        executionProviders: ['cpu'],
        intraOpNumThreads: opts.threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
    });
    const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;

    const feeds = {};
    for (const meta of session.inputMetadata) {
        if (!meta.isTensor) throw new Error('input ' + meta.name + ' is not a tensor');
        const file = opts.inputs ? path.join(opts.inputs, meta.name + '.npy') : null;
        if (file && fs.existsSync(file)) {
            const a = readNpy(file);
            if (a.type !== meta.type) throw new Error(file + ': dtype ' + a.type + ', model input ' + meta.name + ' wants ' + meta.type);
            feeds[meta.name] = new ort.Tensor(a.type, a.data, a.dims);
        } else {
            feeds[meta.name] = randomTensor(ort, meta, opts.batch, opts.seed);
        }
    }

    let outputs = null;
    for (let i = 0; i < opts.warmup; i++) outputs = await session.run(feeds);
    const times = [];
    for (let i = 0; i < opts.runs; i++) {
        const s = process.hrtime.bigint();
        outputs = await session.run(feeds);
        times.push(Number(process.hrtime.bigint() - s) / 1e6);
    }

    if (opts.dump) {
        fs.mkdirSync(opts.dump, { recursive: true });
        for (const name of session.outputNames) {
            const t = outputs[name];
            // File names follow `inferbooster run --output-dir`: the output's name.
            writeNpy(path.join(opts.dump, name + '.npy'), t.type, t.dims, t.data);
        }
    }

    const batch = feeds[session.inputNames[0]].dims[0] || opts.batch;
    const sorted = times.slice().sort((a, b) => a - b);
    const med = median(sorted);
    const result = {
        runtime: 'onnxruntime-node ' + ort.env.versions.node,
        model: opts.model,
        threads: opts.threads,
        batch,
        runs: opts.runs,
        warmup: opts.warmup,
        median_ms: +med.toFixed(4),
        p90_ms: +percentile(sorted, 0.9).toFixed(4),
        min_ms: +sorted[0].toFixed(4),
        throughput: +(batch * 1000 / med).toFixed(3),
        peak_rss_mb: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
        baseline_rss_mb: +baselineRss.toFixed(1),
        load_ms: +loadMs.toFixed(1),
    };
    process.stdout.write(JSON.stringify(result) + '\n');
    await session.release();
}

main().catch((e) => {
    process.stderr.write('ort_bench: ' + (e && e.message ? e.message : String(e)) + '\n');
    process.exit(1);
});
