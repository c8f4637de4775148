// Benchmark Worker: the floor of an authorizing proxy Worker, without any authorization. It
// does the request work every variant that authorizes must do and nothing else: reads every
// request header (as the library hands them to the core), rebuilds the request that would go
// upstream (the Authorization header removed, x-mcp-subject added), and answers with the same
// fixed 200. The mcp-edge-auth Worker's cache hit is measured against this (issue 16): what it
// costs beyond it is the core's and the glue's.
export default {
  async fetch(request) {
    let block = '';
    for (const [name, value] of request.headers) block += `${name}:${value}\n`;
    const upstream = new Request(request.url, request);
    upstream.headers.delete('authorization');
    upstream.headers.set('x-mcp-subject', block.length > 0 ? 'client-0' : 'nobody');
    return new Response('ok');
  },
};
