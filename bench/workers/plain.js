// Benchmark Worker: no authorization at all, the fixed 200 the other Workers answer with.
export default {
  async fetch() {
    return new Response('ok');
  },
};
