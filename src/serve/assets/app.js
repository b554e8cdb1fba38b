// PixelQuery map page: a date slider, layer pickers, map tiles from /tiles, and a click that
// charts the pixel's history from /point. The view lives in the URL (shareable), and the
// page exposes its state on <body> for tests: data-ready, data-tiles-loaded,
// data-tiles-errors, data-clicked, data-chart-state and data-chart-points.
(function () {
  'use strict';

  var config = JSON.parse(document.getElementById('pq-config').textContent || '{}');
  var body = document.body;
  var $ = function (id) { return document.getElementById(id); };
  var url = new URL(location.href);
  var token = url.searchParams.get('access_token');
  var info = null;
  var map = null;
  var dataLayer = null;
  var marker = null;
  var chart = null;
  var loaded = 0;
  var failed = 0;
  var pick = null;

  function api(path, params) {
    var p = new URLSearchParams();
    Object.keys(params || {}).forEach(function (k) {
      if (params[k] !== undefined && params[k] !== null && params[k] !== '') p.set(k, params[k]);
    });
    if (token) p.set('access_token', token);
    var q = p.toString();
    return path + (q ? '?' + q : '');
  }

  function getJSON(path, params) {
    return fetch(api(path, params)).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j.error || r.statusText);
        return j;
      });
    });
  }

  function status(text) { $('status').textContent = text || ''; }

  // --- What can be shown: true/false colour, indices, single bands --------------------------
  function showOptions() {
    var names = {};
    var bands = [];
    Object.keys(info.products).forEach(function (id) {
      info.products[id].bands.forEach(function (b) {
        names[b.band.toLowerCase()] = true;
        b.aliases.forEach(function (a) { names[a.toLowerCase()] = true; });
        bands.push({ id: id, band: b.band, aliases: b.aliases });
      });
    });
    var has = function (list) { return list.every(function (n) { return names[n]; }); };
    var out = [];
    if (has(['red', 'green', 'blue'])) out.push(['rgb', 'True colour']);
    if (has(['nir', 'red', 'green'])) out.push(['false', 'False colour (NIR)']);
    Object.keys(info.indices || {}).forEach(function (name) {
      if (has(info.indices[name])) out.push(['index:' + name, name.toUpperCase()]);
    });
    bands.forEach(function (b) {
      var alias = b.aliases.length ? ' (' + b.aliases[0] + ')' : '';
      out.push(['band:' + b.band, 'Band ' + b.band + alias + (Object.keys(info.products).length > 1 ? ' ' + b.id : '')]);
    });
    return out;
  }

  function fillSelect(select, options, value) {
    select.innerHTML = '';
    options.forEach(function (o) {
      var opt = document.createElement('option');
      opt.value = o[0];
      opt.textContent = o[1];
      select.appendChild(opt);
    });
    if (value && options.some(function (o) { return o[0] === value; })) select.value = value;
  }

  // --- State <-> URL ------------------------------------------------------------------------
  function state() {
    return {
      date: info.dates[+$('date').value] || '',
      show: $('show').value,
      composite: $('composite').value,
      span: $('span').value,
      mask: $('mask').checked ? '1' : '0',
      cmap: $('cmap').value,
      rmin: $('rmin').value.trim(),
      rmax: $('rmax').value.trim()
    };
  }

  function writeURL() {
    var s = state();
    var p = new URLSearchParams();
    Object.keys(s).forEach(function (k) { if (s[k] !== '') p.set(k, s[k]); });
    if (map) {
      var c = map.getCenter();
      p.set('lat', c.lat.toFixed(5));
      p.set('lon', c.lng.toFixed(5));
      p.set('z', String(map.getZoom()));
    }
    if (pick) {
      p.set('plon', pick[0].toFixed(6));
      p.set('plat', pick[1].toFixed(6));
    }
    if (token) p.set('access_token', token);
    history.replaceState(null, '', '?' + p.toString());
  }

  function isSingleBand(show) { return show.indexOf('index:') === 0 || show.indexOf('band:') === 0; }

  // --- Layer parameters (tiles) and series parameters (/point) -------------------------------
  function content(show) {
    if (show === 'rgb') return { bands: 'red,green,blue' };
    if (show === 'false') return { bands: 'nir,red,green' };
    if (show.indexOf('index:') === 0) return { index: show.slice(6) };
    if (show.indexOf('band:') === 0) return { bands: show.slice(5) };
    return {};
  }

  function monthsBefore(date, months) {
    var d = new Date(date + 'T00:00:00Z');
    d.setUTCMonth(d.getUTCMonth() - months);
    d.setUTCDate(d.getUTCDate() + 1);
    return d.toISOString().slice(0, 10);
  }

  function layerParams() {
    var s = state();
    var p = content(s.show);
    if (s.composite) {
      p.time = monthsBefore(s.date, +s.span) + '..' + s.date;
      p.composite = s.composite;
    } else {
      p.time = s.date;
    }
    if (s.mask === '1') p.mask = 'clouds';
    if (isSingleBand(s.show)) p.colormap = s.cmap;
    if (s.rmin !== '' && s.rmax !== '') p.rescale = s.rmin + ',' + s.rmax;
    return p;
  }

  function seriesParams(lon, lat, format) {
    var s = state();
    var p = content(s.show);
    p.lon = lon.toFixed(6);
    p.lat = lat.toFixed(6);
    if (s.mask === '1') p.mask = 'clouds';
    p.format = format;
    return p;
  }

  // --- Map ----------------------------------------------------------------------------------
  function refreshLayer() {
    var s = state();
    $('date-label').textContent = s.date;
    $('span-box').hidden = !s.composite;
    $('cmap-box').hidden = !isSingleBand(s.show);
    writeURL();
    return getJSON('tilejson.json', layerParams()).then(function (tj) {
      status('');
      if (dataLayer) {
        dataLayer.options.minZoom = tj.minzoom;
        dataLayer.setUrl(tj.tiles[0]);
      } else {
        addDataLayer(tj);
      }
      body.dataset.layer = tj.tiles[0];
    }).catch(function (e) { status(e.message); });
  }

  function addDataLayer(tj) {
    var b = info.bounds;
    dataLayer = L.tileLayer(tj.tiles[0], {
      minZoom: tj.minzoom,
      maxZoom: 22,
      maxNativeZoom: 22,
      bounds: b ? L.latLngBounds([[b[1], b[0]], [b[3], b[2]]]) : undefined,
      attribution: 'PixelQuery, warehouse version ' + info.version
    });
    dataLayer.on('tileload', function () { loaded += 1; body.dataset.tilesLoaded = String(loaded); });
    dataLayer.on('tileerror', function () { failed += 1; body.dataset.tilesErrors = String(failed); });
    dataLayer.addTo(map);
  }

  function setupMap() {
    map = L.map('map', { zoomControl: true, attributionControl: true });
    if (config.basemap) {
      L.tileLayer(config.basemap, { maxZoom: 20, attribution: 'basemap' }).addTo(map);
    }
    var b = info.bounds;
    if (b) {
      L.rectangle([[b[1], b[0]], [b[3], b[2]]], { color: '#555', weight: 1, fill: false, interactive: false }).addTo(map);
    }
    var lat = parseFloat(url.searchParams.get('lat'));
    var lon = parseFloat(url.searchParams.get('lon'));
    var z = parseInt(url.searchParams.get('z'), 10);
    if (isFinite(lat) && isFinite(lon) && isFinite(z)) {
      map.setView([lat, lon], z);
    } else if (info.center) {
      map.setView([info.center[1], info.center[0]], info.center[2]);
    } else {
      map.setView([0, 0], 2);
    }
    map.on('moveend', writeURL);
    map.on('click', function (e) { choose(e.latlng.lng, e.latlng.lat); });
  }

  // --- The pixel's history -------------------------------------------------------------------
  function choose(lon, lat) {
    pick = [lon, lat];
    body.dataset.clicked = lon.toFixed(6) + ',' + lat.toFixed(6);
    if (marker) marker.remove();
    marker = L.circleMarker([lat, lon], { radius: 6, color: '#d33', weight: 2, fill: false }).addTo(map);
    writeURL();
    loadSeries();
  }

  function loadSeries() {
    if (!pick) return;
    var lon = pick[0];
    var lat = pick[1];
    body.dataset.chartState = 'loading';
    $('csv').href = api('point', seriesParams(lon, lat, 'csv'));
    $('csv').hidden = false;
    getJSON('point', seriesParams(lon, lat, 'json')).then(function (res) {
      var points = res.rows.map(function (r) { return [r.time, r.band, r.value === undefined ? null : r.value]; });
      drawChart(res, lon, lat);
      body.dataset.chartPoints = JSON.stringify(points);
      body.dataset.chartState = 'ready';
    }).catch(function (e) {
      $('chart-title').textContent = e.message;
      body.dataset.chartPoints = '[]';
      body.dataset.chartState = 'error';
      if (chart) { chart.destroy(); chart = null; }
    });
  }

  function drawChart(res, lon, lat) {
    var times = [];
    var seen = {};
    res.rows.forEach(function (r) {
      if (!seen[r.time]) { seen[r.time] = true; times.push(r.time); }
    });
    var index = {};
    times.forEach(function (t, i) { index[t] = i; });
    var colours = ['#1b7837', '#2166ac', '#b2182b', '#762a83', '#e08214'];
    var data = [times.map(function (t) { return Date.parse(t) / 1000; })];
    var series = [{}];
    res.bands.forEach(function (band, k) {
      var ys = times.map(function () { return null; });
      res.rows.forEach(function (r) { if (r.band === band && r.value !== undefined) ys[index[r.time]] = r.value; });
      data.push(ys);
      series.push({ label: band, stroke: colours[k % colours.length], width: 1.5, spanGaps: false,
        points: { show: true, size: 7 } });
    });
    $('chart-title').textContent = res.bands.join(', ') + ' at ' + lon.toFixed(5) + ', ' + lat.toFixed(5) +
      ' (' + res.values + '; gaps are masked or missing)';
    var el = $('chart');
    var opts = { width: Math.max(el.clientWidth, 300), height: 200, series: series,
      axes: [{}, { size: 60 }], scales: { x: { time: true } } };
    if (chart) chart.destroy();
    chart = new uPlot(opts, data, el);
  }

  // --- Start --------------------------------------------------------------------------------
  function start() {
    getJSON('info').then(function (i) {
      info = i;
      var dates = info.dates || [];
      var d = $('date');
      d.max = String(Math.max(dates.length - 1, 0));
      var want = url.searchParams.get('date');
      var at = want ? dates.indexOf(want) : -1;
      d.value = String(at >= 0 ? at : dates.length - 1);
      fillSelect($('show'), showOptions(), url.searchParams.get('show'));
      fillSelect($('cmap'), (info.colormaps || ['viridis']).map(function (c) { return [c, c]; }),
        url.searchParams.get('cmap') || 'rdylgn');
      ['composite', 'span'].forEach(function (k) {
        var v = url.searchParams.get(k);
        if (v !== null) $(k).value = v;
      });
      if (url.searchParams.get('mask') === '0') $('mask').checked = false;
      $('rmin').value = url.searchParams.get('rmin') || '';
      $('rmax').value = url.searchParams.get('rmax') || '';
      setupMap();
      ['date', 'show', 'composite', 'span', 'mask', 'cmap', 'rmin', 'rmax'].forEach(function (k) {
        $(k).addEventListener(k === 'date' ? 'input' : 'change', function () {
          refreshLayer();
          if (k === 'show' || k === 'mask') loadSeries();
        });
      });
      return refreshLayer().then(function () {
        var plon = parseFloat(url.searchParams.get('plon'));
        var plat = parseFloat(url.searchParams.get('plat'));
        if (isFinite(plon) && isFinite(plat)) choose(plon, plat);
        body.dataset.ready = '1';
      });
    }).catch(function (e) { status(e.message); body.dataset.ready = 'error'; });
    window.addEventListener('resize', function () {
      if (chart) chart.setSize({ width: Math.max($('chart').clientWidth, 300), height: 200 });
    });
  }

  start();
}());
