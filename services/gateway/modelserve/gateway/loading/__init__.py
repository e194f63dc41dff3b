"""Dynamic loading, the gateway's side: requests for a sleeping model are held until it
wakes, and every replica tells the operator what it holds and serves.

- `book`: this replica's requests per server (in flight, held, last used);
- `states`: pure logic: what becomes of a held request (`verdict`), and the state a
  model is in for /v1/models and /health (`model_state`);
- `holding`: the bounded hold per server, woken by the route table's changes;
- `reporter`: this replica's load report, a Lease the operator reads
  (`modelserve.common.load_reports`), renewed and written at once when it matters.

The operator alone scales: the gateway never touches a Deployment. A held request asks
for its model through the report; it is forwarded as soon as the route table shows a
ready endpoint of the server.
"""
