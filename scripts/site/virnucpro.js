/* virnucpro's additions to asv's pages, called from the lines scripts/publish_site.py changes in
   asv's own scripts: which machines a graph shows at first, which parameter values have data,
   commit labels on the x axis and which way is better for a metric.  They read the "virnucpro"
   entry that publish_site.py adds to index.json. */
var virnucpro = (function () {
    function info() {
        return ($.asv && $.asv.main_json && $.asv.main_json.virnucpro) || {};
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

    return {default_machines: default_machines, measured: measured, worse: worse, commit_ticks: commit_ticks};
})();
