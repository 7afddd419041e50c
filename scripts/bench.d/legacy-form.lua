-- wrk script of scripts/bench: the guestbook POST of examples/legacy-site
-- (form.pl, form.py), urlencoded, with the cookies a returning visitor
-- sends; then report.lua's line of numbers (scripts/bench sets
-- WCGID_BENCH_D to scripts/bench.d).
wrk.method = "POST"
wrk.body = "name=x&comment=hi+there&topping=ham&topping=olives&go=Sign"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "visitor=x; visits=1"
dofile(os.getenv("WCGID_BENCH_D") .. "/report.lua")
