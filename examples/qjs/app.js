// A CGI app in JavaScript for QuickJS-NG, evaluated once, at init.
//
// The init is the expensive part: it sieves the primes below 2,000,000. A
// request then answers from that table: `?n=97` says whether n is prime and
// which primes surround it.

const LIMIT = 2_000_000;
const composite = new Uint8Array(LIMIT + 1);
const primes = [];
for (let i = 2; i <= LIMIT; i++) {
  if (composite[i]) continue;
  primes.push(i);
  for (let j = i * i; j <= LIMIT; j += i) composite[j] = 1;
}

// Bumped by every request. Each request starts from the snapshot taken after
// the init, so every answer says 1.
let served = 0;

function query() {
  const params = {};
  for (const pair of (std.getenv("QUERY_STRING") || "").split("&")) {
    const [key, value = ""] = pair.split("=");
    if (key) params[decodeURIComponent(key)] = decodeURIComponent(value.replace(/\+/g, " "));
  }
  return params;
}

// The first index whose prime is >= n.
function firstAtLeast(n) {
  let lo = 0, hi = primes.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (primes[mid] < n) lo = mid + 1; else hi = mid;
  }
  return lo;
}

globalThis.handle = function () {
  served += 1;
  const n = Number(query().n ?? 97);
  if (!Number.isInteger(n) || n < 0 || n > LIMIT) {
    std.out.puts(`Status: 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nn must be a whole number up to ${LIMIT}\n`);
    return;
  }
  const at = firstAtLeast(n);
  const prime = primes[at] === n;
  const before = primes[prime ? at - 1 : at - 1];
  const after = primes[prime ? at + 1 : at];
  std.out.puts("Content-Type: text/plain; charset=utf-8\r\n\r\n");
  std.out.puts(`${n} is ${prime ? "prime" : "not prime"}; primes around it: ${before ?? "none"} and ${after ?? "none"}\n`);
  std.out.puts(`${primes.length} primes below ${LIMIT}; request ${served} of this instance\n`);
};
