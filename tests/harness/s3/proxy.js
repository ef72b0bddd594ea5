#!/usr/bin/env node
// A verifying, fault-injecting HTTP proxy in front of s3rver, for shardgate's
// integration tests. s3rver stores objects faithfully but checks no SigV4
// signature, no payload hash and no multipart rule, and cannot fail on
// demand; this proxy adds those checks (with AWS's own signer), the multipart
// bookkeeping s3rver lacks (AbortMultipartUpload, part sizes), and a script
// of faults (a 503 on the 3rd part, a reset mid-body, a stalled response).
//
//   node proxy.js --upstream http://127.0.0.1:PORT --access-key S3RVER \
//                 --secret S3RVER [--port 0] [--min-part-size BYTES]
//
// Control endpoints (no authentication; bucket names cannot start with "_"):
//   PUT /__faults      JSON array of rules; replaces the script, resets counters
//   GET /__log         JSON array of the S3 requests seen since DELETE /__log
//   DELETE /__log
//   GET /__uploads     {"open": [uploadId...], "completed": N, "aborted": N}
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const { SignatureV4, getCanonicalHeaders } = require('@smithy/signature-v4');
const { Sha256 } = require('@aws-crypto/sha256-js');

const MiB = 1024 * 1024;
// Headers that belong to one connection, not to the request (RFC 9110 7.6.1);
// expect is answered here, since the body is read before forwarding.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer',
                            'transfer-encoding', 'upgrade', 'expect', 'content-length']);
const ACTIONS = new Set(['status', 'reset', 'truncate', 'delay', 'stall', 'drop', 'complete-error']);

function parseArgs(argv) {
    const opts = { port: 0, minPartSize: 5 * MiB };
    for (let i = 0; i < argv.length; i++) {
        const value = argv[i + 1];
        switch (argv[i]) {
        case '--upstream': opts.upstream = new URL(value); i++; break;
        case '--access-key': opts.accessKey = value; i++; break;
        case '--secret': opts.secret = value; i++; break;
        case '--port': opts.port = Number(value); i++; break;
        case '--min-part-size': opts.minPartSize = Number(value); i++; break;
        default:
            console.error(`proxy: unknown argument ${argv[i]}`);
            process.exit(2);
        }
    }
    if (!opts.upstream || !opts.accessKey || opts.secret === undefined ||
        !Number.isInteger(opts.port) || !Number.isInteger(opts.minPartSize) || opts.minPartSize < 1) {
        console.error('usage: node proxy.js --upstream URL --access-key KEY --secret SECRET' +
                      ' [--port N] [--min-part-size BYTES]');
        process.exit(2);
    }
    return opts;
}

const opts = parseArgs(process.argv.slice(2));
const upstreamAgent = new http.Agent({ keepAlive: true });
let faults = [];   // rules, each with its own match counter
let log = [];
const uploads = new Map(); // uploadId -> {resource, state, parts: Map(n -> {size, etag})}
let requestSerial = 0;

// ---------------------------------------------------------------- helpers

class S3Error extends Error {
    constructor(status, code, message, extra = {}) {
        super(message);
        this.status = status;
        this.code = code;
        this.extra = extra;
    }
}

// Element text only: quotes need no escaping there.
function xmlEscape(s) {
    return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function errorBody(code, message, resource, requestId, extra = {}) {
    let xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${xmlEscape(code)}</Code>` +
              `<Message>${xmlEscape(message)}</Message><Resource>${xmlEscape(resource)}</Resource>` +
              `<RequestId>${requestId}</RequestId>`;
    for (const [name, value] of Object.entries(extra))
        xml += `<${name}>${xmlEscape(value)}</${name}>`;
    return Buffer.from(xml + '</Error>\n');
}

function xmlResponse(status, body, requestId, extraHeaders = {}) {
    return { status, headers: [['Content-Type', 'application/xml'], ['x-amz-request-id', requestId],
                               ...Object.entries(extraHeaders)], body };
}

// RFC 3986 encoding as SigV4 wants it: everything but unreserved characters.
function escapeUri(s) {
    return encodeURIComponent(s).replace(/[!'()*]/g,
        (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

// The raw query string as a map of decoded names to decoded values (an array
// when a name repeats), the shape the signer canonicalizes. "?uploads" has
// the value "".
function parseQuery(raw) {
    const query = Object.create(null);
    for (const part of raw.split('&')) {
        if (part === '')
            continue;
        const eq = part.indexOf('=');
        const name = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
        const value = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1));
        if (name in query)
            query[name] = [].concat(query[name], value);
        else
            query[name] = value;
    }
    return query;
}

// S3 does not normalize paths ("//" and "." stay) but encodes each segment
// exactly once: decode what the client sent and encode it the canonical way,
// so a client that signs a differently encoded path is caught.
function canonicalPath(rawPath) {
    return rawPath.split('/').map((seg) => escapeUri(decodeURIComponent(seg))).join('/');
}

function sha256(body, encoding) {
    return crypto.createHash('sha256').update(body).digest(encoding);
}

function constantTimeEqual(a, b) {
    const x = Buffer.from(a), y = Buffer.from(b);
    return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function readBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => resolve(Buffer.concat(chunks)));
        req.on('error', reject);
        req.on('close', () => reject(new Error('the connection closed before the whole body came')));
    });
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------- SigV4 check

const AUTH_RE = /^AWS4-HMAC-SHA256 +Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request *, *SignedHeaders=([a-z0-9\-;]+) *, *Signature=([0-9a-f]{64})$/;

// Throws an S3Error unless the request carries a valid SigV4 Authorization
// header for our credentials and its body matches the hashes it declares.
async function verifyRequest(req, rawPath, rawQuery, body) {
    const auth = req.headers.authorization;
    if (auth === undefined)
        throw new S3Error(403, 'AccessDenied', 'the request has no Authorization header (anonymous access is refused)');
    const m = AUTH_RE.exec(auth);
    if (!m)
        throw new S3Error(403, 'SignatureDoesNotMatch',
                          `the Authorization header is not a well-formed AWS4-HMAC-SHA256 header: ${auth}`);
    const [, accessKey, scopeDate, region, service, signedList, signature] = m;
    if (accessKey !== opts.accessKey)
        throw new S3Error(403, 'InvalidAccessKeyId', `the access key id ${accessKey} does not exist`);
    if (service !== 's3')
        throw new S3Error(403, 'SignatureDoesNotMatch', `the credential scope names service ${service}, not s3`);

    const signed = signedList.split(';');
    const sorted = [...signed].sort();
    if (signed.some((h, i) => h !== sorted[i] || h === sorted[i - 1]))
        throw new S3Error(403, 'SignatureDoesNotMatch', `SignedHeaders is not sorted and unique: ${signedList}`);
    const required = ['host', 'x-amz-date', 'x-amz-content-sha256'];
    if (req.headers['x-amz-security-token'] !== undefined)
        required.push('x-amz-security-token');
    for (const name of required) {
        if (!signed.includes(name))
            throw new S3Error(403, 'SignatureDoesNotMatch', `the header ${name} is not among the signed headers (${signedList})`);
    }
    const headers = {};
    for (const name of signed) {
        const values = req.headersDistinct[name];
        if (values === undefined)
            throw new S3Error(403, 'SignatureDoesNotMatch', `the signed header ${name} is not in the request`);
        headers[name] = values.join(',');
    }

    const amzDate = headers['x-amz-date'];
    const dm = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(amzDate);
    if (!dm)
        throw new S3Error(403, 'SignatureDoesNotMatch', `x-amz-date is not an ISO 8601 basic timestamp: ${amzDate}`);
    if (amzDate.slice(0, 8) !== scopeDate)
        throw new S3Error(403, 'SignatureDoesNotMatch',
                          `the credential scope date ${scopeDate} is not the day of x-amz-date ${amzDate}`);
    const signingDate = new Date(`${dm[1]}-${dm[2]}-${dm[3]}T${dm[4]}:${dm[5]}:${dm[6]}Z`);

    const contentSha = headers['x-amz-content-sha256'];
    if (contentSha.startsWith('STREAMING-'))
        throw new S3Error(501, 'NotImplemented', `x-amz-content-sha256 ${contentSha} (aws-chunked upload) is not supported by this test service`);
    if (contentSha !== 'UNSIGNED-PAYLOAD' && !/^[0-9a-f]{64}$/.test(contentSha))
        throw new S3Error(400, 'InvalidArgument', `x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a lowercase hex SHA-256, not ${contentSha}`);

    let path, query;
    try {
        path = canonicalPath(rawPath);
        query = parseQuery(rawQuery);
    } catch (e) {
        throw new S3Error(400, 'InvalidURI', `cannot decode the request target ${rawPath}?${rawQuery}: ${e.message}`);
    }
    const signer = new SignatureV4({
        credentials: { accessKeyId: accessKey, secretAccessKey: opts.secret,
                       sessionToken: headers['x-amz-security-token'] },
        region, service: 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: false,
    });
    const request = { method: req.method, protocol: 'http:', hostname: headers.host, path, query, headers };
    const expected = await signer.sign(request, { signingDate, signableHeaders: new Set(signed) });
    const expectedSignature = /Signature=([0-9a-f]{64})/.exec(expected.headers.authorization)[1];
    if (!constantTimeEqual(expectedSignature, signature)) {
        // What AWS itself puts in this error, to debug a client's signer.
        const canonical = signer.createCanonicalRequest(
            expected, getCanonicalHeaders({ headers }, undefined, new Set(signed)), contentSha);
        throw new S3Error(403, 'SignatureDoesNotMatch',
                          'the request signature we calculated does not match the signature you provided',
                          { AWSAccessKeyId: accessKey, CanonicalRequest: canonical });
    }

    if (contentSha !== 'UNSIGNED-PAYLOAD' && sha256(body, 'hex') !== contentSha)
        throw new S3Error(400, 'XAmzContentSHA256Mismatch',
                          `x-amz-content-sha256 ${contentSha} is not the SHA-256 of the ${body.length}-byte body (${sha256(body, 'hex')})`);
    const checksum = req.headers['x-amz-checksum-sha256'];
    if (checksum !== undefined && checksum !== sha256(body, 'base64'))
        throw new S3Error(400, 'BadDigest', `x-amz-checksum-sha256 ${checksum} is not the SHA-256 of the ${body.length}-byte body`);
    const md5 = req.headers['content-md5'];
    if (md5 !== undefined && md5 !== crypto.createHash('md5').update(body).digest('base64'))
        throw new S3Error(400, 'BadDigest', `Content-MD5 ${md5} is not the MD5 of the ${body.length}-byte body`);
}

// ---------------------------------------------------------------- faults

function parseFaults(body) {
    const rules = JSON.parse(body.toString('utf8') || 'null');
    if (!Array.isArray(rules))
        throw new Error('the fault script must be a JSON array of rules');
    return rules.map((r, i) => {
        if (typeof r !== 'object' || r === null || !ACTIONS.has(r.action))
            throw new Error(`rule ${i}: action must be one of ${[...ACTIONS].join(', ')}`);
        const nth = r.nth ?? 1, count = r.count ?? 1;
        if (!Number.isInteger(nth) || nth < 1)
            throw new Error(`rule ${i}: nth must be an integer >= 1`);
        if (!Number.isInteger(count) || (count < 1 && count !== -1))
            throw new Error(`rule ${i}: count must be -1 or an integer >= 1`);
        if (r.action === 'status' && !(Number.isInteger(r.status) && r.status >= 200 && r.status <= 599))
            throw new Error(`rule ${i}: a status action needs an HTTP status`);
        if ((r.action === 'delay' || r.action === 'stall') && !(Number.isInteger(r.ms) && r.ms >= 0))
            throw new Error(`rule ${i}: a ${r.action} action needs ms`);
        return { ...r, nth, count, index: i, seen: 0,
                 pathRe: r.path === undefined ? null : new RegExp(r.path) };
    });
}

// Every rule that matches counts the request; the first whose window
// [nth, nth + count) holds its count decides the fault.
function pickFault(method, path, query) {
    let chosen = null;
    for (const rule of faults) {
        if ((rule.method !== undefined && rule.method !== method) ||
            (rule.pathRe && !rule.pathRe.test(path)) ||
            (rule.query !== undefined && !query.includes(rule.query)))
            continue;
        rule.seen++;
        const hit = rule.seen >= rule.nth && (rule.count === -1 || rule.seen < rule.nth + rule.count);
        if (hit && !chosen)
            chosen = rule;
    }
    return chosen;
}

// ---------------------------------------------------------------- upstream

function forward(req, body) {
    return new Promise((resolve, reject) => {
        const headers = [];
        for (let i = 0; i < req.rawHeaders.length; i += 2) {
            if (!HOP_BY_HOP.has(req.rawHeaders[i].toLowerCase()) && !/^proxy-/i.test(req.rawHeaders[i]))
                headers.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
        }
        if (body.length > 0 || req.headers['content-length'] !== undefined)
            headers.push('Content-Length', String(body.length));
        const up = http.request({
            host: opts.upstream.hostname, port: opts.upstream.port, method: req.method,
            path: req.url, headers, agent: upstreamAgent,
        }, (res) => {
            readBody(res).then((data) => {
                const out = [];
                for (let i = 0; i < res.rawHeaders.length; i += 2) {
                    const name = res.rawHeaders[i].toLowerCase();
                    if (!HOP_BY_HOP.has(name) || (name === 'content-length' && req.method === 'HEAD'))
                        out.push([res.rawHeaders[i], res.rawHeaders[i + 1]]);
                }
                if (req.method !== 'HEAD' && res.statusCode !== 204 && res.statusCode !== 304)
                    out.push(['Content-Length', String(data.length)]);
                resolve({ status: res.statusCode, headers: out, body: data });
            }, reject);
        });
        up.on('error', reject);
        up.end(body);
    });
}

// ---------------------------------------------------------------- multipart

function xmlValues(xml, tag) {
    return [...xml.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => m[1]);
}

function noSuchUpload(id) {
    return new S3Error(404, 'NoSuchUpload', `the multipart upload ${id} does not exist, or was completed or aborted`);
}

// Refuses a CompleteMultipartUpload that S3 or R2 would refuse; s3rver
// checks neither ETags nor part sizes.
function checkComplete(upload, id, body) {
    const parts = xmlValues(body.toString('utf8'), 'Part').map((p) => ({
        number: Number(xmlValues(p, 'PartNumber')[0]),
        etag: (xmlValues(p, 'ETag')[0] ?? '').replace(/&quot;|"/g, ''),
    }));
    if (parts.length === 0)
        throw new S3Error(400, 'MalformedXML', `the CompleteMultipartUpload body for upload ${id} lists no parts`);
    parts.forEach((p, i) => {
        if (!Number.isInteger(p.number) || (i > 0 && p.number <= parts[i - 1].number))
            throw new S3Error(400, 'InvalidPartOrder', `the parts of upload ${id} are not listed in ascending order (part ${p.number} at position ${i + 1})`);
        const stored = upload.parts.get(p.number);
        if (!stored)
            throw new S3Error(400, 'InvalidPart', `part ${p.number} of upload ${id} was never uploaded`);
        if (stored.etag !== p.etag)
            throw new S3Error(400, 'InvalidPart', `the ETag ${p.etag} given for part ${p.number} of upload ${id} is not the part's ETag ${stored.etag}`);
    });
    // AWS: every part but the last at least 5 MiB; Cloudflare R2: every part
    // but the last of one size (the last may be smaller).
    const first = upload.parts.get(parts[0].number).size;
    for (const p of parts.slice(0, -1)) {
        const size = upload.parts.get(p.number).size;
        if (size < opts.minPartSize)
            throw new S3Error(400, 'EntityTooSmall', `part ${p.number} of upload ${id} has ${size} bytes, less than the minimum part size of ${opts.minPartSize} bytes`);
        if (size !== first)
            throw new S3Error(400, 'InvalidPart', `part ${p.number} of upload ${id} has ${size} bytes but part ${parts[0].number} has ${first}: all parts but the last must have the same size`);
    }
    const last = upload.parts.get(parts[parts.length - 1].number).size;
    if (parts.length > 1 && last > first)
        throw new S3Error(400, 'InvalidPart', `the last part ${parts[parts.length - 1].number} of upload ${id} has ${last} bytes, more than the ${first} of the other parts`);
}

// Answers or forwards a request that passed the checks, keeping the
// multipart bookkeeping; returns the response to deliver.
async function handleS3(req, path, query, body, requestId) {
    let q;
    try {
        q = parseQuery(query);
    } catch (e) {
        throw new S3Error(400, 'InvalidURI', `cannot decode the query string ${query}`);
    }
    const id = typeof q.uploadId === 'string' ? q.uploadId : undefined;
    const upload = id === undefined ? undefined : uploads.get(id);
    const finished = upload !== undefined && upload.state !== 'open';

    if (id !== undefined && req.method === 'DELETE') {
        if (upload === undefined || finished || upload.resource !== path)
            throw noSuchUpload(id);
        upload.state = 'aborted';
        upload.parts.clear();
        return { status: 204, headers: [['x-amz-request-id', requestId]], body: Buffer.alloc(0) };
    }
    if (id !== undefined && finished)
        throw noSuchUpload(id);
    if (id !== undefined && req.method === 'POST' && upload !== undefined)
        checkComplete(upload, id, body);

    const res = await forward(req, body);
    if (res.status !== 200)
        return res;
    const text = () => res.body.toString('utf8');
    if (req.method === 'POST' && 'uploads' in q) {
        const created = xmlValues(text(), 'UploadId')[0];
        if (created !== undefined)
            uploads.set(created, { resource: path, state: 'open', parts: new Map() });
    } else if (req.method === 'PUT' && upload !== undefined && q.partNumber !== undefined) {
        const etag = res.headers.find(([n]) => n.toLowerCase() === 'etag');
        upload.parts.set(Number(q.partNumber), { size: body.length, etag: etag ? etag[1].replace(/"/g, '') : '' });
    } else if (req.method === 'POST' && upload !== undefined && !text().includes('<Error>')) {
        upload.state = 'completed';
        upload.parts.clear();
    }
    return res;
}

// ---------------------------------------------------------------- delivery

function send(res, response) {
    res.writeHead(response.status, response.headers.flat());
    res.end(response.body);
}

// Sends the response the way the fault says: whole, or cut short.
function deliver(req, res, response, fault) {
    const action = fault ? fault.action : null;
    if (action !== 'reset' && action !== 'truncate' && action !== 'stall')
        return send(res, response);
    const half = response.body.subarray(0, Math.floor(response.body.length / 2));
    const rest = response.body.subarray(half.length);
    res.writeHead(response.status, response.headers.flat());
    res.flushHeaders();
    if (action === 'stall') {
        res.write(half);
        setTimeout(() => res.end(rest), fault.ms);
    } else if (action === 'truncate') {
        // The declared Content-Length stays; the connection closes cleanly early.
        res.write(half, () => req.socket.end());
    } else {
        // A moment for the client to read what was sent before the RST, which
        // would otherwise discard it from the client's receive queue.
        res.write(half, () => setTimeout(() => req.socket.resetAndDestroy(), 50));
    }
}

// ---------------------------------------------------------------- server

function control(req, res, path, body) {
    const json = (status, value) => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(value));
    };
    if (path === '/__faults' && req.method === 'PUT') {
        try {
            faults = parseFaults(body);
        } catch (e) {
            return json(400, { error: `bad fault script: ${e.message}` });
        }
        res.writeHead(204).end();
    } else if (path === '/__log' && req.method === 'GET') {
        json(200, log);
    } else if (path === '/__log' && req.method === 'DELETE') {
        log = [];
        res.writeHead(204).end();
    } else if (path === '/__uploads' && req.method === 'GET') {
        const all = [...uploads.entries()];
        json(200, { open: all.filter(([, u]) => u.state === 'open').map(([id]) => id),
                    completed: all.filter(([, u]) => u.state === 'completed').length,
                    aborted: all.filter(([, u]) => u.state === 'aborted').length });
    } else {
        json(404, { error: `no control endpoint ${req.method} ${path}` });
    }
}

async function handle(req, res) {
    const body = await readBody(req);
    const qmark = req.url.indexOf('?');
    const path = qmark < 0 ? req.url : req.url.slice(0, qmark);
    const query = qmark < 0 ? '' : req.url.slice(qmark + 1);
    if (path.startsWith('/__'))
        return control(req, res, path, body);

    const requestId = (++requestSerial).toString(16).toUpperCase().padStart(16, '0');
    const entry = { method: req.method, path, query, bodyLength: body.length, status: 0, fault: null, rule: null };
    log.push(entry);
    let response, fault = null;
    try {
        await verifyRequest(req, path, query, body);
        fault = pickFault(req.method, path, query);
        if (fault) {
            entry.fault = fault.action;
            entry.rule = fault.index;
        }
        if (fault && fault.action === 'drop') {
            req.socket.destroy();
            return;
        } else if (fault && fault.action === 'status') {
            response = fault.raw !== undefined
                ? { status: fault.status, headers: [['Content-Type', 'text/html']], body: Buffer.from(fault.raw) }
                : xmlResponse(fault.status, errorBody(fault.code ?? 'InternalError', fault.message ?? 'injected fault', path, requestId), requestId);
            response.headers.push(...Object.entries(fault.headers ?? {}));
        } else if (fault && fault.action === 'complete-error') {
            // S3 may answer CompleteMultipartUpload 200 and report the failure in the body.
            response = xmlResponse(200, errorBody('InternalError', 'We encountered an internal error. Please try again.', path, requestId), requestId);
        } else {
            if (fault && fault.action === 'delay')
                await sleep(fault.ms);
            response = await handleS3(req, path, query, body, requestId);
        }
    } catch (e) {
        if (!(e instanceof S3Error))
            throw e;
        response = xmlResponse(e.status, errorBody(e.code, e.message, path, requestId, e.extra), requestId);
    }
    entry.status = response.status;
    console.error(`${req.method} ${req.url} ${body.length} -> ${response.status}${fault ? ` fault=${fault.action}` : ''}`);
    deliver(req, res, response, fault);
}

const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
        console.error(`proxy: ${req.method} ${req.url}: ${e.stack || e}`);
        if (!res.headersSent)
            send(res, xmlResponse(500, errorBody('InternalError', `proxy: ${e.message}`, req.url, '0'), '0'));
        else
            req.socket.destroy();
    });
});
// Client sockets reset by tests must not bring the proxy down.
server.on('clientError', (err, socket) => socket.destroy());
server.listen(opts.port, '127.0.0.1', () => {
    console.log(`proxy listening on 127.0.0.1:${server.address().port}`);
});
