// Benchmark Worker: the floor of an authorizing proxy Worker, without any authorization. It
// does the request work every variant that authorizes must do and nothing else: reads the
// request headers the way the library hands them to the core (the core's READ_HEADERS, each
// with Headers.get), rebuilds the request that would go upstream (the Authorization header
// removed, x-mcp-subject set), and answers with the same fixed 200. The mcp-edge-auth
// Worker's cache hit is measured against this (issue 16): what it costs beyond it is the
// core's and the glue's.
const READ_HEADERS = ['authorization', 'origin', 'access-control-request-method', 'mcp-method', 'mcp-name', 'mcp-protocol-version'];

export default {
  async fetch(request) {
    const headers = request.headers;
    let block = '';
    for (const name of READ_HEADERS) {
      const value = headers.get(name);
      if (value !== null) block += `\n${name}:${value}`;
    }
    const upstream = new Request(request);
    upstream.headers.delete('authorization');
    upstream.headers.set('x-mcp-subject', block.length > 0 ? 'client-0' : 'nobody');
    return new Response('ok');
  },
};
