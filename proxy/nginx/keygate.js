/*
 * keygate.js: asks keygate about every request once, then either answers
 * with keygate's deny exactly as keygate gave it, or hands the request on to
 * the backend with the identity keygate vouched for. Used by keygate.conf:
 *
 *     js_import keygate from /etc/nginx/keygate/keygate.js;
 *     location / { js_content keygate.check; }
 *
 * Written for njs 0.7.9 (Debian bookworm's libnginx-mod-http-js) and later,
 * whose JavaScript has async/await, let/const and arrow functions but no
 * for...of, destructuring, spread, optional chaining, default parameters,
 * classes, generators, Map or Set: this file keeps to var, plain loops and
 * functions.
 *
 * SECURITY: this handler fails closed. keygate's allow is a 200 carrying
 * x-keygate-key-id, x-keygate-account-id, x-keygate-scopes and
 * x-keygate-env; its deny is a 400, 401, 402, 403, 413, 415, 429 or 503
 * with a JSON error body. Anything else (keygate unreachable, a timeout, a
 * 500, a 200 without the identity headers, a deny that is not JSON, an
 * allow that asks to remove a credential header keygate.conf does not
 * remove) is answered 503 auth_unavailable, and the request never reaches
 * the backend.
 */

// The internal location that proxies to keygate, and the named location
// that proxies to the backend (both in keygate.conf).
var CHECK = '/_keygate';
var BACKEND = '@keygate_backend';

// keygate's denials: passed to the client with these headers and the body.
// 400, 413 and 415 refuse a body keygate cannot read or will not pass
// (metering); 402 is retryable (x-should-retry: true) while requests in
// flight hold the balance.
var DENY_STATUSES = [400, 401, 402, 403, 413, 415, 429, 503];
var DENY_HEADERS = [
    'Content-Type', 'WWW-Authenticate', 'X-Should-Retry', 'Retry-After',
    'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset',
    'X-RateLimit-Limit-Requests', 'X-RateLimit-Remaining-Requests', 'X-RateLimit-Reset-Requests',
    'X-RateLimit-Limit-Tokens', 'X-RateLimit-Remaining-Tokens', 'X-RateLimit-Reset-Tokens'
];

// keygate's allow: identity headers for the backend, each into the js_var
// that keygate.conf sends upstream with proxy_set_header. An allow without
// a non-empty key id, account id and env is not an allow.
var IDENTITY = [
    ['X-Keygate-Key-Id', 'keygate_key_id', true],
    ['X-Keygate-Account-Id', 'keygate_account_id', true],
    ['X-Keygate-Scopes', 'keygate_scopes', false], // empty for a key without scopes
    ['X-Keygate-Env', 'keygate_env', true]
];

// keygate's allow of a metered request names its reservation, which the
// backend settles (keygate's settle API); an allow that is not metered
// names none, and the variable stays empty.
var RESERVATION = ['X-Keygate-Reservation-Id', 'keygate_reservation_id'];

// keygate's allow names the credential headers to remove before the backend
// (for Envoy's http_service, which removes them itself); keygate.conf removes
// those listed in $keygate_credential_headers.
var REMOVE = 'X-Envoy-Auth-Headers-To-Remove';
var STRIPPED = 'keygate_credential_headers';

// The length of a body the check does not carry, which keygate.conf sends
// keygate as X-Original-Content-Length.
var UNSENT = 'keygate_unsent_length';

// keygate's allow: headers for the client, each into the js_var that
// keygate.conf adds to the response with add_header.
var CLIENT = [
    ['X-RateLimit-Limit', 'keygate_ratelimit_limit'],
    ['X-RateLimit-Remaining', 'keygate_ratelimit_remaining'],
    ['X-RateLimit-Reset', 'keygate_ratelimit_reset'],
    ['X-RateLimit-Limit-Requests', 'keygate_ratelimit_limit_requests'],
    ['X-RateLimit-Remaining-Requests', 'keygate_ratelimit_remaining_requests'],
    ['X-RateLimit-Reset-Requests', 'keygate_ratelimit_reset_requests'],
    ['X-RateLimit-Limit-Tokens', 'keygate_ratelimit_limit_tokens'],
    ['X-RateLimit-Remaining-Tokens', 'keygate_ratelimit_remaining_tokens'],
    ['X-RateLimit-Reset-Tokens', 'keygate_ratelimit_reset_tokens'],
    ['X-Balance-Low', 'keygate_balance_low'],
    ['X-Balance-Remaining', 'keygate_balance_remaining']
];

var UNAVAILABLE = JSON.stringify({
    error: {
        message: 'Authentication is temporarily unavailable. Retry in a moment; if this persists, contact the API provider.',
        type: 'server_error',
        param: null,
        code: 'auth_unavailable'
    }
});

// unavailable answers 503 auth_unavailable, as keygate itself does when
// its key store is out of reach. The reason goes to nginx's error log; it
// never contains the credential.
function unavailable(r, reason) {
    r.error('keygate: ' + reason + '; answering 503 auth_unavailable');
    r.headersOut['Content-Type'] = 'application/json';
    r.headersOut['Retry-After'] = '1';
    r.return(503, UNAVAILABLE);
}

// header returns the value of one header of keygate's answer, or undefined.
function header(reply, name) {
    var v = reply.headersOut[name];
    if (typeof v !== 'string') {
        return undefined;
    }
    return v;
}

function isDenyBody(text) {
    var body;
    try {
        body = JSON.parse(text);
    } catch (e) {
        return false;
    }
    return body !== null && typeof body === 'object' && body.error !== null &&
        typeof body.error === 'object' && typeof body.error.code === 'string';
}

// unstripped returns the first header keygate asks to remove that
// keygate.conf does not, or undefined. Header names are not secret.
function unstripped(r, reply) {
    var i, name, asked = header(reply, REMOVE);
    // keygate.conf sends the reservation id from its variable alone, so a
    // client's never reaches the backend.
    var stripped = String(r.variables[STRIPPED] || '').toLowerCase().split(/[\s,]+/).concat([RESERVATION[0].toLowerCase()]);
    if (asked === undefined) {
        return undefined;
    }
    asked = asked.split(',');
    for (i = 0; i < asked.length; i++) {
        name = asked[i].trim().toLowerCase();
        if (name !== '' && stripped.indexOf(name) < 0) {
            return name;
        }
    }
    return undefined;
}

function allow(r, reply) {
    var i, v;
    // SECURITY: every identity value comes from keygate's answer; none is
    // left over from the client (keygate.conf sends these variables, and
    // nothing else, as the x-keygate-* headers).
    for (i = 0; i < IDENTITY.length; i++) {
        v = header(reply, IDENTITY[i][0]);
        if (v === undefined || (IDENTITY[i][2] && (v === '' || v.indexOf(',') >= 0))) {
            unavailable(r, 'keygate allowed without a single ' + IDENTITY[i][0]);
            return;
        }
    }
    // SECURITY: a credential header keygate reads but keygate.conf does
    // not remove would reach the backend with the key in it.
    v = unstripped(r, reply);
    if (v !== undefined) {
        unavailable(r, 'keygate reads keys from the header ' + JSON.stringify(v) +
            ', which keygate.conf does not remove before the backend: add it to' +
            ' $keygate_credential_headers and a proxy_set_header for it to @keygate_backend');
        return;
    }
    for (i = 0; i < IDENTITY.length; i++) {
        r.variables[IDENTITY[i][1]] = header(reply, IDENTITY[i][0]);
    }
    v = header(reply, RESERVATION[0]);
    if (v !== undefined) {
        r.variables[RESERVATION[1]] = v;
    }
    for (i = 0; i < CLIENT.length; i++) {
        v = header(reply, CLIENT[i][0]);
        if (v !== undefined) {
            r.variables[CLIENT[i][1]] = v;
        }
    }
    // js_var values survive the redirect: nginx keeps the request's
    // variables across internal redirects.
    r.internalRedirect(BACKEND);
}

function deny(r, reply) {
    var i, v, text = reply.responseText;
    if (typeof text !== 'string' || !isDenyBody(text)) {
        unavailable(r, 'keygate denied ' + reply.status + ' without a JSON error body');
        return;
    }
    v = header(reply, 'Content-Type');
    if (v === undefined || v.toLowerCase().indexOf('application/json') !== 0) {
        unavailable(r, 'keygate denied ' + reply.status + ' with content-type ' + v);
        return;
    }
    for (i = 0; i < DENY_HEADERS.length; i++) {
        v = header(reply, DENY_HEADERS[i]);
        if (v !== undefined) {
            r.headersOut[DENY_HEADERS[i]] = v;
        }
    }
    r.return(reply.status, text);
}

function decide(r, reply) {
    if (reply.status === 200) {
        allow(r, reply);
    } else if (DENY_STATUSES.indexOf(reply.status) >= 0) {
        deny(r, reply);
    } else {
        unavailable(r, 'keygate answered ' + reply.status);
    }
}

// check is the js_content handler of every client request.
// SECURITY: the backend gets the client's Host (keygate.conf). A Host
// that is not a DNS name or an IP address (a "\" in it, say) is refused:
// some backends build the request's URL from Host and path together
// (Hono's node server does), and such a Host can move the path they route
// on away from the one keygate checked. nginx gives $host in lowercase,
// without the port.
var HOST = /^([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.?$|^\[[0-9a-f:.]+\]$/;

var BAD_HOST = JSON.stringify({
    error: {
        message: 'The request\'s Host header is not a host name or an IP address.',
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_host'
    }
});

// The body the check carries, so that keygate can read what its limits
// need (the model, the output cap, the prompt's size): the client's, when
// nginx holds it in memory, which it does up to client_body_buffer_size
// (1 MiB, as much as keygate reads). A body nginx wrote to a temporary
// file is not sent: keygate.conf gives keygate its length in
// X-Original-Content-Length instead, and keygate answers as for a body it
// cannot see. It returns undefined when nginx does not know that length.
function checkBody(r) {
    var body, length;
    try {
        body = r.requestBuffer;
    } catch (e) {
        // njs throws for a body in a file.
        length = String(r.variables.content_length || '');
        if (!/^[1-9][0-9]*$/.test(length)) {
            return undefined;
        }
        r.variables[UNSENT] = length;
        return '';
    }
    return body === undefined ? '' : body;
}

async function check(r) {
    var reply, body;
    if (!HOST.test(r.variables.host)) {
        r.headersOut['Content-Type'] = 'application/json';
        r.headersOut['X-Should-Retry'] = 'false';
        r.return(400, BAD_HOST);
        return;
    }
    body = checkBody(r);
    if (body === undefined) {
        unavailable(r, 'the request body is in a file of a length nginx does not know');
        return;
    }
    try {
        // SECURITY: one check per request. The subrequest carries the
        // client's headers (the credential, Content-Type and
        // Content-Encoding among them) and the body checkBody gives;
        // keygate.conf sets X-Original-Method and X-Original-URI on it,
        // and its method and URI.
        reply = await r.subrequest(CHECK, { method: 'GET', body: body });
    } catch (e) {
        unavailable(r, 'the check could not be made: ' + e);
        return;
    }
    try {
        decide(r, reply);
    } catch (e) {
        unavailable(r, 'the answer could not be read: ' + e);
    }
}

export default { check: check };
