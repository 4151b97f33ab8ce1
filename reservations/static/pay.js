/* The payment pages: the card form (Stripe.js), the hold countdown, and the receipt's print button.
 *
 * The server decides everything: this script only tokenises the card, posts the token,
 * runs the 3-D Secure challenge when the server asks for it, and shows what the server answers.
 * Every message comes from the page (data-msg-*), so it is in the page's language.
 */
(function () {
  'use strict';

  // --- the receipt's print button: shown only when it can work -----------------------
  document.querySelectorAll('[data-print]').forEach(function (button) {
    button.hidden = false;
    button.addEventListener('click', function () { window.print(); });
  });

  var form = document.getElementById('pay-form');
  if (!form) {
    return;
  }
  var msg = form.dataset;
  var button = document.getElementById('pay-button');
  var errors = document.getElementById('pay-errors');
  var status = document.getElementById('pay-status');
  var countdown = document.getElementById('hold-countdown');
  var busy = false;
  var finished = false; // paid, released or expired: the form is not used again

  function showError(message, next) {
    errors.textContent = '';
    if (!message) {
      return;
    }
    var p = document.createElement('p');
    p.textContent = message;
    errors.appendChild(p);
    if (next) {
      var again = document.createElement('a');
      again.href = next;
      again.textContent = msg.msgAgain;
      errors.appendChild(again);
    }
  }

  function setBusy(on) {
    busy = on;
    button.disabled = on || finished;
    form.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  function finish() {
    finished = true;
    button.disabled = true;
  }

  // --- the countdown to the end of the hold ------------------------------------------
  // It ticks every second on screen only. A screen reader is told the time left in a polite
  // live region a few times (ANNOUNCE_AT minutes left), never every second.
  var ANNOUNCE_AT = [5, 2, 1];
  if (countdown) {
    var announcer = document.getElementById('hold-announce');
    var expiresAt = Date.parse(countdown.getAttribute('datetime'));
    // The server's clock, not the phone's: a phone a few minutes off must not promise time that is not there.
    var skew = Date.parse(countdown.dataset.now) - Date.now();
    var timer = null;
    var secondsLeft = function () {
      return Math.max(0, Math.floor((expiresAt - (Date.now() + skew)) / 1000));
    };
    // A mark already passed when the page opened is not announced: the page itself says the time left.
    var announced = ANNOUNCE_AT.map(function (minutes) { return secondsLeft() <= minutes * 60; });
    var announce = function (left) {
      var due = -1;
      ANNOUNCE_AT.forEach(function (minutes, i) {
        if (!announced[i] && left <= minutes * 60) {
          announced[i] = true;
          due = minutes; // several passed at once (a phone woken from sleep): say only the latest
        }
      });
      if (due > 0 && announcer) {
        announcer.textContent = due === 1 ? msg.msgLastMinute : msg.msgMinutesLeft.replace('{n}', due);
      }
    };
    var tick = function () {
      var left = secondsLeft();
      var seconds = left % 60;
      countdown.textContent = Math.floor(left / 60) + ':' + (seconds < 10 ? '0' : '') + seconds;
      if (left > 0) {
        announce(left);
      } else {
        window.clearInterval(timer);
        if (announcer) {
          announcer.textContent = '';
        }
        if (!busy && !finished) {
          finish();
          status.textContent = '';
          showError(msg.msgExpired);
        }
      }
    };
    if (!isNaN(expiresAt) && !isNaN(skew)) {
      timer = window.setInterval(tick, 1000);
      tick();
    }
  }

  // --- the card form ----------------------------------------------------------------
  if (typeof window.Stripe !== 'function') {
    showError(msg.msgUnloaded);
    return;
  }
  var stripe = window.Stripe(msg.key);
  // In the page's language, not the browser's: the card field and the errors it reports (shown below).
  var card = stripe.elements({locale: document.documentElement.lang}).create('card', {hidePostalCode: true});
  card.mount('#card-element');
  card.on('change', function (event) {
    // Real Stripe.js says what is wrong with the number as it is typed.
    if (event && event.error) {
      showError(event.error.message);
    } else if (event && !busy) {
      showError('');
    }
  });
  if (!finished) {
    button.disabled = false;
  }

  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: {'Content-Type': 'application/json', 'Accept': 'application/json', 'X-CSRFToken': msg.csrf},
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().catch(function () {
        // Not our JSON: a login page after the session ran out, a proxy's error page...
        return {status: 'error', message: msg.msgGeneric, retry: true};
      });
    });
  }

  function show(reply) {
    if (reply.status === 'confirmed' || reply.status === 'waiting') {
      // Paid, or still being processed by the provider: the next page says which.
      finish();
      showError('');
      status.textContent = reply.status === 'confirmed' ? msg.msgPaid : '';
      window.location.assign(reply.redirect);
      return;
    }
    showError(reply.message || msg.msgGeneric, reply.retry ? null : reply.next);
    status.textContent = '';
    if (!reply.retry) {
      finish();
    }
  }

  form.addEventListener('submit', async function (event) {
    event.preventDefault();
    if (busy || finished) {
      return; // a double click: one payment is already on its way
    }
    setBusy(true);
    showError('');
    status.textContent = msg.msgWorking;
    try {
      var made = await stripe.createToken(card);
      if (made.error) {
        showError(made.error.message || msg.msgGeneric);
        status.textContent = '';
        return;
      }
      var reply = await post(form.action, {token: made.token.id});
      if (reply.status === 'requires_action') {
        status.textContent = msg.msgAuthenticate;
        // Whatever the challenge says, the server asks the provider how it really went.
        await stripe.confirmCardPayment(reply.client_secret);
        status.textContent = msg.msgWorking;
        reply = await post(msg.completeUrl, {});
      }
      show(reply);
    } catch (err) {
      showError(msg.msgNetwork);
      status.textContent = '';
    } finally {
      setBusy(false);
    }
  });
}());
