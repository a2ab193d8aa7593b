/* virnucpro's additions to asv's pages, called from the lines scripts/publish_site.py changes in
   asv's own scripts: how the pages load their data, which machines a graph shows at first, which
   parameter values have data, commit labels on the x axis and which way is better for a metric.
   They read the "virnucpro" entry that publish_site.py adds to index.json. */
var virnucpro = (function () {
    function info() {
        return ($.asv && $.asv.main_json && $.asv.main_json.virnucpro) || {};
    }

    /* asv's pages fetch their JSON by XHR, which Chromium and Firefox refuse to a page opened as a
       file (file://, a double-click): the site showed "Error fetching content" and no graph.  A
       file page may still load scripts, so publish_site.py writes every X.json of the site also
       as X.json.js, a call of loaded() below with the same data, and asv's $.ajax calls come here
       instead (the PATCHES of publish_site.py).  A served site keeps asv's XHR and its caching.
       Each file is loaded when asv asks for it, so a long history is not read all at once. */
    function ajax(options) {
        if (window.location.protocol !== "file:") {
            return $.ajax(options);
        }
        var dfd = $.Deferred();
        // asv adds ?timestamp=... against stale HTTP caches; the file on disk has no such name
        var path = options.url.split("?")[0];
        if (!/\.json$/.test(path)) {
            // asv fetches swallow.ico only to ask whether the web server is still up: a file page
            // has none, and a graph that did not load is then shown as "no data", as asv does
            return dfd.resolve("").promise();
        }
        var script = document.createElement("script");
        script.onload = function () {
            script.remove();
            if ("virnucpro_data" in script) {
                dfd.resolve(script.virnucpro_data);
            } else {
                dfd.reject();  // a .js that did not hand over its data
            }
        };
        script.onerror = function () {
            script.remove();
            dfd.reject();  // no such file: asv's own failure paths take over, as on a 404
        };
        script.src = path + ".js";
        document.head.appendChild(script);
        return dfd.promise();
    }

    /* Called by each X.json.js while it runs: the data goes to the <script> that ajax() made for it,
       so that requests running at the same time cannot swap their answers. */
    function loaded(data) {
        document.currentScript.virnucpro_data = data;
    }

    /* This machine's own results are listed but not drawn until asked for. */
    function default_machines(machines) {
        var local = info().local_machines || [];
        var kept = machines.filter(function (m) { return local.indexOf(m) === -1; });
        return kept.length ? kept : machines;
    }

    /* Whether a parameter value of a benchmark has any data on the machines drawn by default. */
    function measured(benchmark, param, value) {
        var seen = (info().measured || {})[benchmark];
        if (!seen || !seen[param]) {
            return true;
        }
        return seen[param].indexOf(value) !== -1;
    }

    /* A change in percent, turned so that positive means worse. */
    function worse(benchmark, change) {
        return (info().higher_is_better || []).indexOf(benchmark) !== -1 ? -change : change;
    }

    /* x-axis ticks at measured commits, labelled with their hash, far enough apart to read. */
    function commit_ticks(axis) {
        var hashes = $.asv.main_json.revision_to_hash;
        var revisions = Object.keys(hashes).map(Number).filter(function (r) {
            return r >= axis.min && r <= axis.max;
        }).sort(function (a, b) { return a - b; });
        var gap = (axis.max - axis.min) / 8, ticks = [], last = -Infinity;
        revisions.forEach(function (r) {
            if (r - last >= gap) {
                ticks.push([r, hashes[r].slice(0, 7)]);
                last = r;
            }
        });
        return ticks;
    }

    return {ajax: ajax, loaded: loaded, default_machines: default_machines, measured: measured, worse: worse,
            commit_ticks: commit_ticks};
})();
