-- wrk script: etcd v3 JSON gateway linearizable range of one key ("bench/1").
wrk.method = "POST"
wrk.body = '{"key":"YmVuY2gvMQ=="}'
wrk.headers["Content-Type"] = "application/json"
