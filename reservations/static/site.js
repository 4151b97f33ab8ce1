/* Every page: the header's menu on a phone, and focus on a form's error summary.
 *
 * Both are enhancements: without script the header's links wrap below the brand,
 * and the summary (role="alert", autofocus) is still announced and focused.
 */
(function () {
  'use strict';

  // --- the header's menu: one row on a phone, the links behind a button ----------------
  var toggle = document.querySelector('header.site .menu-toggle');
  var nav = document.getElementById('site-nav');
  if (toggle && nav) {
    var header = toggle.closest('header');
    var setOpen = function (open) {
      toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
      header.classList.toggle('menu-open', open);
    };
    header.classList.add('has-menu');
    toggle.hidden = false;
    toggle.addEventListener('click', function () {
      setOpen(toggle.getAttribute('aria-expanded') !== 'true');
    });
    header.addEventListener('keydown', function (event) {
      if (event.key === 'Escape' && toggle.getAttribute('aria-expanded') === 'true') {
        setOpen(false);
        toggle.focus();
      }
    });
  }

  // --- a form sent back with errors: focus its summary, which links to each field -------
  var summary = document.querySelector('.error-summary');
  if (summary && document.activeElement !== summary) {
    summary.focus();
  }
}());
